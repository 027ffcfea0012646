"""The fault suite's own services: a PostgreSQL it restarts and freezes, a Redis it kills.

Never the machine's shared servers (TEST_DATABASE_URL, TEST_REDIS_URL): only what these
fixtures started is broken.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.core.runtime import migrate, recreate_database
from tests.faults.postgres import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this suite's own, on a free port."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def own_database_url(own_postgres: PostgresServer) -> str:
    """A migrated database on the suite's own server."""
    url = recreate_database(own_postgres.url, "roundtable_faults")
    migrate(url)
    return url
