"""Descriptor exhaustion: slow-header sockets are closed and never starve `/healthz`; open
streams are capped per player (429) and per process (503)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import selectors
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from backend.realtime.stream_caps import SharedStreamCounts
from tests.support import redis_server, serve, sse_events

LOW_SOFT_LIMIT = 1024
# More than the soft limit the server starts with: it serves them only with a raised limit.
SLOW_SOCKETS = LOW_SOFT_LIMIT + 76
READ_TIMEOUT = 2.0


def low_soft_descriptor_limit() -> None:
    """In the server's process: a soft limit of 1,024 descriptors (the hard one unchanged)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))


def enough_descriptors_here(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed <= hard or (soft < needed and hard == resource.RLIM_INFINITY):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed, "the test needs more descriptors"


def slow_socket(port: int, partial: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(partial)
    sock.setblocking(False)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_slow_header_sockets_are_closed_and_never_starve_healthz(database_url: str, tmp_path: Path) -> None:
    """1,100 sockets that never finish their headers, against a server started with a soft
    limit of 1,024 descriptors (it raises it to the hard one): /healthz answers within 1 s
    the whole time, and the server closes every slow socket once the read deadline passes,
    those that trickle a byte now and then and one slow on its second kept-alive request too."""
    enough_descriptors_here(SLOW_SOCKETS + 256)
    env = {"REQUEST_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT), "LOG_LEVEL": "warning"}
    with serve(database_url, tmp_path / "server.log", env, preexec_fn=low_soft_descriptor_limit) as server:
        port = int(server.url.rsplit(":", 1)[1])
        # A kept-alive connection: one whole request, then the start of another.
        kept = socket.create_connection(("127.0.0.1", port))
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(4096).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /healthz HTTP/1.1\r\n")
        kept.setblocking(False)
        opened = time.monotonic()
        slow = [slow_socket(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(SLOW_SOCKETS - 10)]
        trickling = [slow_socket(port, b"GET /healthz HTTP/1.1\r\nX-Slow: ") for _ in range(9)]
        slow += [*trickling, kept]
        try:
            selector = selectors.DefaultSelector()
            for sock in slow:
                selector.register(sock, selectors.EVENT_READ)
            open_now = set(slow)
            answers: list[float] = []
            held_while_answered: list[int] = []
            closed_after: list[float] = []
            with httpx.Client(timeout=1.0, limits=httpx.Limits(max_keepalive_connections=0)) as http:
                while open_now:
                    assert time.monotonic() - opened < READ_TIMEOUT + 5, (
                        f"{len(open_now)} slow sockets still open"
                    )
                    started = time.monotonic()
                    assert http.get(f"{server.url}/healthz").status_code == 200  # raises past 1 s
                    answers.append(time.monotonic() - started)
                    held_while_answered.append(len(open_now))
                    for sock in trickling:
                        if sock in open_now:
                            with contextlib.suppress(OSError):  # a byte now and then: no idle timer is reset
                                sock.send(b"a")
                    for key, _ in selector.select(timeout=0.2):
                        ready = key.fileobj
                        assert isinstance(ready, socket.socket)
                        if closed_by_peer(ready):
                            selector.unregister(ready)
                            open_now.discard(ready)
                            closed_after.append(time.monotonic() - opened)
            # Answered with every slow socket held, and each closed by the deadline, not before.
            assert held_while_answered[0] == SLOW_SOCKETS
            assert max(answers) < 1.0
            assert min(closed_after) >= READ_TIMEOUT * 0.9
        finally:
            for sock in slow:
                sock.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


async def new_room(http: httpx.AsyncClient, base: str, *nicknames: str) -> list[dict[str, Any]]:
    host = (
        await http.post(f"{base}/v1/rooms", json={"name": "Caps", "nickname": "Host", "ruleset": "mafia"})
    ).json()
    sessions = [host]
    for name in nicknames:
        joined = await http.post(f"{base}/v1/rooms/{host['room']['id']}/players", json={"nickname": name})
        assert joined.status_code == 201, joined.text
        sessions.append(joined.json())
    return sessions


async def ws_close(url: str, token: str) -> tuple[int, str]:
    """Open a socket that the server refuses after its handshake; return the close code and reason."""
    async with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_streams_are_capped_per_player_and_per_process(database_url: str, tmp_path: Path) -> None:
    """At most MAX_STREAMS_PER_PLAYER streams (SSE and WebSocket together) per player: one
    more is 429 too_many_streams (a WebSocket closes 4429); past MAX_STREAMS in the process,
    503 server_busy (1013). Closing a stream gives its slot back."""
    env = {"MAX_STREAMS_PER_PLAYER": "2", "MAX_STREAMS": "4", "STREAMS_RETRY_AFTER_SECONDS": "3"}
    with serve(database_url, tmp_path / "server.log", env) as server:
        base = server.url
        async with httpx.AsyncClient(timeout=10) as http:
            host, bob, carol = await new_room(http, base, "Bob", "Carol")
            room_id = host["room"]["id"]
            events_url = f"{base}/v1/rooms/{room_id}/events"
            ws_url = f"{base.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws"

            def sse(session: dict[str, Any]) -> Any:
                return http.stream("GET", events_url, headers={"Authorization": f"Bearer {session['token']}"})

            async with sse(host) as first, sse(host) as second:
                # The parsers stay referenced: collecting one would close its stream.
                parsers = [sse_events(response) for response in (first, second)]
                for parser in parsers:
                    assert (await anext(parser)).event == "snapshot"
                async with sse(host) as third:
                    assert third.status_code == 429
                    assert third.headers["content-type"] == "application/problem+json"
                    assert third.headers["retry-after"] == "3"
                    assert json.loads(await third.aread())["code"] == "too_many_streams"
                assert await ws_close(ws_url, host["token"]) == (4429, "too_many_streams")

                # Bob's two streams fill the process (4).
                async with (
                    sse(bob) as bobs,
                    ws_connect(
                        ws_url, additional_headers={"Authorization": f"Bearer {bob['token']}"}
                    ) as bob_ws,
                ):
                    bob_events = sse_events(bobs)
                    assert (await anext(bob_events)).event == "snapshot"
                    assert json.loads(await bob_ws.recv())["type"] == "snapshot"
                    async with sse(carol) as busy:
                        assert busy.status_code == 503
                        assert busy.headers["retry-after"] == "3"
                        assert json.loads(await busy.aread())["code"] == "server_busy"
                    assert await ws_close(ws_url, carol["token"]) == (1013, "server_busy")

            # Every stream closed: their slots are free again.
            async def opens(session: dict[str, Any]) -> bool:
                async with sse(session) as response:
                    status: int = response.status_code
                    return status == 200

            for session in (host, host, carol):
                deadline = asyncio.get_running_loop().time() + 5
                while not await opens(session):
                    assert asyncio.get_running_loop().time() < deadline, "slots not given back"
                    await asyncio.sleep(0.05)
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log


async def test_the_per_player_cap_holds_across_servers_sharing_redis(
    database_url: str, tmp_path: Path
) -> None:
    """Two servers (or workers) sharing Redis count a player's streams together: two open on
    one, a third on the other is 429 (a WebSocket 4429); one closed, the other takes one.
    Without Redis a stream is admitted on the process's own count."""
    env = {"MAX_STREAMS_PER_PLAYER": "2", "STREAMS_RETRY_AFTER_SECONDS": "3", "LOG_LEVEL": "warning"}
    with redis_server(tmp_path) as redis:
        env["REDIS_URL"] = redis.url
        with (
            serve(database_url, tmp_path / "a.log", env) as a,
            serve(database_url, tmp_path / "b.log", env) as b,
        ):
            async with httpx.AsyncClient(timeout=10) as http:
                (host,) = await new_room(http, a.url)
                room_id = host["room"]["id"]
                auth = {"Authorization": f"Bearer {host['token']}"}

                def sse(base: str) -> Any:
                    return http.stream("GET", f"{base}/v1/rooms/{room_id}/events", headers=auth)

                async def status_on(base: str) -> int:
                    async with sse(base) as response:
                        status: int = response.status_code
                        return status

                async with sse(a.url) as first:
                    first_events = sse_events(first)
                    assert (await anext(first_events)).event == "snapshot"
                    async with sse(a.url) as second:
                        second_events = sse_events(second)
                        assert (await anext(second_events)).event == "snapshot"
                        async with sse(b.url) as third:
                            assert third.status_code == 429
                            assert json.loads(await third.aread())["code"] == "too_many_streams"
                        ws_url = f"{b.url.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws"
                        assert await ws_close(ws_url, host["token"]) == (4429, "too_many_streams")
                    # The second one closed on A: B takes one now.
                    deadline = asyncio.get_running_loop().time() + 5
                    while await status_on(b.url) != 200:
                        assert asyncio.get_running_loop().time() < deadline, "the slot was not given back"
                        await asyncio.sleep(0.05)

                    redis.stop()
                    # Redis gone: B admits on its own count (none of its streams is open).
                    assert await status_on(b.url) == 200
    for name in ("a.log", "b.log"):
        assert "Traceback" not in (tmp_path / name).read_text()


async def test_a_storm_of_streams_is_counted_in_redis_exactly(tmp_path: Path) -> None:
    """A crowd reconnecting at once: 300 streams of one player counted at once and given back
    at once are all counted in Redis (none falls back to the process's own count because
    the Redis client ran out of connections), and nothing stays counted afterwards."""
    streams = 300
    with redis_server(tmp_path) as redis:
        counts = SharedStreamCounts(redis.url, uuid.uuid4(), cap=streams, hash_ttl=60)
        await counts.start()
        try:
            player = uuid.uuid4()
            taken = await asyncio.gather(*(counts.take(player) for _ in range(streams)))
            assert taken == [True] * streams
            key = f"roundtable:streams:{player}"
            assert sum(int(n) for n in (await redis_hash(redis.url, key)).values()) == streams
            assert await counts.take(player) is False  # over the cap
            for _ in range(streams):
                counts.give_back(player)
            await asyncio.gather(*counts._pending)
            assert await redis_hash(redis.url, key) == {}
        finally:
            await counts.stop()


async def redis_hash(url: str, key: str) -> dict[bytes | str, bytes | str]:
    client = Redis.from_url(url)
    try:
        found: dict[bytes | str, bytes | str] = await client.hgetall(key)
        return found
    finally:
        await client.aclose()
