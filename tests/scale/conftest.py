"""The scale suite's own services: a PgBouncer in transaction mode in front of the tests'
PostgreSQL, and a database of the suite's own behind it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from backend.core.runtime import recreate_database
from tests.conftest import TEST_DATABASE, postgres_server_url
from tests.scale.pgbouncer import PgBouncer, pgbouncer
from tests.support import ROOT

POOLED_DATABASE = f"{TEST_DATABASE}_pgbouncer"


@pytest.fixture(scope="session")
def bouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """PgBouncer 1.18 in transaction mode on a free port, 5 server connections per database
    (so a server's 20 pooled connections really share them)."""
    log = tmp_path_factory.mktemp("pgbouncer") / "pgbouncer.log"
    with pgbouncer(postgres_server_url(), log, pool_size=5) as running:
        yield running


@pytest.fixture(scope="session")
def direct_url() -> str:
    """The suite's database, empty (the first server to start migrates it through PgBouncer),
    as PostgreSQL itself serves it: for the tests' own look at what the games left."""
    return recreate_database(postgres_server_url(), POOLED_DATABASE)


@pytest.fixture(scope="session")
def pooled_url(bouncer: PgBouncer, direct_url: str) -> str:
    """The suite's database through PgBouncer, migrated through it from empty by
    `python -m backend migrate` (DATABASE_POOLER=transaction), as an operator would."""
    url = bouncer.url(POOLED_DATABASE)
    env = {**os.environ, "DATABASE_URL": url, "DATABASE_POOLER": "transaction", "LOG_LEVEL": "info"}
    command = [sys.executable, "-m", "backend", "migrate"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Running upgrade  ->" in done.stderr, done.stderr
    return url
