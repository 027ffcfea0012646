"""Shared fixtures: a real PostgreSQL test database, migrated by Alembic, and an async client."""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from backend.app import create_app
from backend.core.config import Settings
from backend.core.embedded import embedded_database_url
from backend.core.runtime import migrate, recreate_database
from tests.support import NO_RATE_LIMITS, serve

# Rate limits out of reach for every app and server the tests start (Settings() and `serve`
# read the environment): the tests share one client address and make many rooms, players
# and commands. A test about limits sets its own (tests/integration/test_rate_limits.py).
for _name, _value in NO_RATE_LIMITS.items():
    os.environ.setdefault(_name, _value)

# `make test-fast` (pytest -m "not slow"): what a developer runs between edits. Slow is what
# starts server processes, browsers, npm or fault injection; the rest runs in-process.
SLOW_DIRS = {"e2e", "faults", "bench", "scale"}
SLOW_MODULES = {
    "test_browsers",
    "test_connection_limits",
    "test_fanout",
    "test_front_door",
    "test_game_live",
    "test_lifecycle",
    "test_over_http",
    "test_schemathesis",
    "test_shutdown",
    "test_spec_change",
    "test_spec_lint",
    "test_typescript_client",
    "test_typescript_package",
}
SLOW_FIXTURES = {"server_url", "server", "own_postgres", "own_redis", "two_workers"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow tests (see SLOW_DIRS) so `make test-fast` can leave them out."""
    for item in items:
        path = Path(str(item.path))
        function = getattr(item, "function", None)
        if (
            SLOW_DIRS & set(path.parts)
            or path.stem in SLOW_MODULES
            or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
            or (function is not None and "serve(" in inspect.getsource(function))
        ):
            item.add_marker(pytest.mark.slow)


# Two checkouts can test against one PostgreSQL server at once, each with a database of its own.
TEST_DATABASE = os.environ.get("TEST_DATABASE_NAME", "roundtable_test")
ROOT = Path(__file__).resolve().parents[1]


def postgres_server_url() -> str:
    """Return the PostgreSQL server the tests use: the environment's, else the embedded one."""
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url
    return embedded_database_url(Settings().data_dir)


@pytest.fixture(scope="session")
def database_url() -> str:
    """A fresh, migrated test database; never the database `make run` uses."""
    url = recreate_database(postgres_server_url(), TEST_DATABASE)
    migrate(url)
    return url


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    """The application, started (lifespan) against the test database."""
    application = create_app(Settings(), database_url=database_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An async HTTP client talking to the app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://roundtable.test") as c:
        yield c


# The ADMIN_TOKEN of the `server_url` server, so the contract tests reach the operators' API
# (tests/contract/schemathesis_hooks.py sends it on /admin/ paths); without one, every /admin/
# path is 404 (tests/integration/test_admin.py).
SERVER_ADMIN_TOKEN = "contract-tests-admin-" + "0123456789" * 3


@pytest.fixture(scope="session")
def server_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serve the app in its own process on a free port against the test database."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    # Rate limits out of reach: the contract tests send many requests from one address.
    with serve(database_url, log, {**NO_RATE_LIMITS, "ADMIN_TOKEN": SERVER_ADMIN_TOKEN}) as server:
        yield server.url
    assert "Traceback" not in log.read_text(), log.read_text()


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


async def create_room(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """Create a room and return the 201 body."""
    body: dict[str, Any] = {"name": "Friday night", "nickname": "Host", "ruleset": "mafia", **overrides}
    response = await client.post("/v1/rooms", json=body)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session
