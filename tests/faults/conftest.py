"""The fault suite's own services: a PostgreSQL it restarts and freezes, a Redis it kills.

Never the machine's shared servers (TEST_DATABASE_URL, TEST_REDIS_URL): only what these
fixtures started is broken.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.core.runtime import migrate, recreate_database
from tests.faults.postgres import PostgresServer, postgres_server
from tests.support import RedisServer, Server, redis_server, serve

# Two workers, as in production: doorbells between them go through Redis. Chat limits out
# of the way (the clients chat fast); a short catch-up interval, so a lost doorbell costs little.
SERVER_ENV = {"WORKERS": "2", "CHAT_PER_SECOND": "100000", "CHAT_BURST": "100000", "CATCHUP_SECONDS": "0.5"}


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


@pytest.fixture(scope="session")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server of this suite's own, on a free port."""
    with redis_server(tmp_path_factory.mktemp("redis")) as redis:
        yield redis


@pytest.fixture(scope="session")
def server(
    own_database_url: str, own_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`python -m backend serve` with two workers on the suite's own PostgreSQL and Redis
    (each test leaves both running again)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve(own_database_url, log, {**SERVER_ENV, "REDIS_URL": own_redis.url}) as s:
        yield s
