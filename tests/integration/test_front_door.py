"""`make run`'s server: embedded PostgreSQL when DATABASE_URL is unset, data kept across a crash."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from backend.app import create_app
from backend.core.config import Settings
from backend.core.runtime import migrate, recreate_database
from tests.conftest import TEST_DATABASE, bearer, create_room, postgres_server_url
from tests.support import ROOT, free_port, serve, wait_until_up


@contextmanager
def serving(data_dir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m backend serve` (what `make run` runs) with no DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "WORKERS")}
    env |= {"DATA_DIR": str(data_dir), "PORT": str(port), "LOG_LEVEL": "warning"}
    server = subprocess.Popen([sys.executable, "-m", "backend", "serve"], cwd=ROOT, env=env)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server, check="readyz")
        yield server
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop the embedded server that the app left running for the next start."""
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGINT)  # fast shutdown


def test_embedded_database_serves_and_keeps_rooms_across_a_kill(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        with serving(data_dir, port) as server:
            body = {"name": "Survivor", "nickname": "Alice", "ruleset": "mafia"}
            created = httpx.post(f"{base}/v1/rooms", json=body, timeout=10)
            assert created.status_code == 201
            assert set(created.json()) == {"room", "player", "token"}
            server.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown
        assert (data_dir / "pgdata" / "PG_VERSION").exists()

        with serving(data_dir, port):
            room_id = created.json()["room"]["id"]
            again = httpx.get(f"{base}/v1/rooms/{room_id}", timeout=10)
            assert again.status_code == 200
            assert again.json()["name"] == "Survivor"
            state = httpx.get(
                f"{base}/v1/rooms/{room_id}/state",
                headers={"Authorization": f"Bearer {created.json()['token']}"},
                timeout=10,
            )
            assert state.json()["last_seq"] == 1
    finally:
        stop_embedded_postgres(data_dir)


@pytest.fixture
async def app_without_database() -> FastAPI:
    """The app pointed at a PostgreSQL that does not answer."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    return create_app(Settings(), database_url=url)


async def test_unreachable_database_is_a_503_problem_not_a_500(app_without_database: FastAPI) -> None:
    app = app_without_database
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roundtable.test") as client:
            body = {"name": "x", "nickname": "y", "ruleset": "mafia"}
            created = await client.post("/v1/rooms", json=body)
            assert created.status_code == 503
            assert created.headers["content-type"].startswith("application/problem+json")
            assert created.json()["code"] == "database_unavailable"
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert (await client.get("/healthz")).status_code == 200


@pytest.fixture
def own_database() -> str:
    """A migrated database of this test's own, whose connections it may kill."""
    url = recreate_database(postgres_server_url(), f"{TEST_DATABASE}_faults")
    migrate(url)
    return url


async def test_a_database_connection_killed_under_the_server_costs_503s_never_a_500(
    own_database: str,
) -> None:
    """Chat runs on the driver (not the ORM): a pooled connection the server killed fails one
    request with a 503 problem and leaves the pool; the next requests get working ones."""
    url = own_database
    # No timer of the app's own touches the pool while the test looks (each would find a dead
    # connection first and have SQLAlchemy drop them all).
    app = create_app(Settings(scheduler_seconds=600, catchup_seconds=600), database_url=url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roundtable.test") as client:
            session = await create_room(client)
            path = f"/v1/rooms/{session['room']['id']}/messages"
            headers = bearer(session["token"])
            assert (await client.post(path, json={"text": "before"}, headers=headers)).status_code == 201
            killer = await asyncpg.connect(url)
            try:
                killed = await killer.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await killer.close()
            assert killed >= 1
            statuses = []
            for attempt in range(30):
                answer = await client.post(path, json={"text": f"after {attempt}"}, headers=headers)
                statuses.append(answer.status_code)
                if answer.status_code == 201:
                    break
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert answer.json()["code"] == "database_unavailable"
            assert statuses[-1] == 201, statuses
            assert 503 in statuses, "no request met a killed connection: the test proved nothing"


async def kill_server_connections(url: str) -> int:
    """Terminate every connection to the test's database but our own; return how many."""
    killer = await asyncpg.connect(url)
    try:
        killed: int = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return killed
    finally:
        await killer.close()


async def test_a_websocket_rides_out_killed_database_connections(own_database: str, tmp_path: Path) -> None:
    """A socket's command that meets a dead connection is answered `database_unavailable` and the
    socket stays open; a socket opened on a dead connection closes 1013 (try again), not 4403
    (which tells clients the token is wrong for good) nor an error page; no error is unexpected."""
    url = own_database
    log = tmp_path / "server.log"
    # Nothing of the server's own touches the pool while the test looks; a small pool.
    quiet = {"SCHEDULER_SECONDS": "600", "CATCHUP_SECONDS": "600", "DB_POOL_SIZE": "3"}
    with serve(url, log, quiet) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            session = (
                await http.post("/v1/rooms", json={"name": "Faults", "nickname": "Host", "ruleset": "mafia"})
            ).json()
        ws_url = f"{server.url.replace('http://', 'ws://')}/v1/rooms/{session['room']['id']}/ws"
        headers = {"Authorization": f"Bearer {session['token']}"}

        async def command(ws: ClientConnection, request_id: str) -> dict[str, Any]:
            await ws.send(json.dumps({"type": "chat", "request_id": request_id, "text": request_id}))
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if reply.get("request_id") == request_id:
                    return cast(dict[str, Any], reply)

        async with ws_connect(ws_url, additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            assert (await command(ws, "before"))["type"] == "ack"
            assert await kill_server_connections(url) >= 1
            replies = []
            for attempt in range(10):  # each dead pooled connection fails one command
                replies.append(await command(ws, f"after-{attempt}"))
                if replies[-1]["type"] == "ack":
                    break
            assert replies[-1]["type"] == "ack", replies  # the same socket, a fresh connection
            detail = {"detail": "The database is unreachable; nothing was written."}
            assert replies[:-1], "no command met a killed connection: the test proved nothing"
            assert replies[:-1] == [
                {"type": "error", "request_id": f"after-{i}", "code": "database_unavailable"} | detail
                for i in range(len(replies) - 1)
            ]

        assert await kill_server_connections(url) >= 1
        closes: list[tuple[int, str]] = []
        for _ in range(10):
            try:
                async with ws_connect(ws_url, additional_headers=headers) as ws:
                    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    break
            except ConnectionClosed as closed:
                closes.append((closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (1006, ""))
        else:
            pytest.fail(f"no socket opened after the database came back: {closes}")
        assert first["type"] == "snapshot"
        assert closes, "no socket met a killed connection: the test proved nothing"
        assert set(closes) == {(1013, "database_unavailable")}
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "unexpected" not in text, text
