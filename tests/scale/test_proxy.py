"""Two Roundtable servers behind Debian's nginx, configured by deploy/nginx.conf as
docs/deploy.md tells operators to, their database behind the suite's PgBouncer in transaction
mode: bot games, streams, client addresses, and a server killed mid-stream and mid-game.

The servers are separate processes on separate ports (as two hosts would be), sharing a
database of their own on the test PostgreSQL and a Redis the fixture starts; each trusts the
proxy's address (TRUSTED_PROXIES=127.0.0.1, where nginx connects from). Clients reach nginx
from other loopback addresses (127.0.0.2, 127.0.0.3, ...), so each is a distinct client
address; every test uses addresses of its own, as the joins limit (3, then one a minute)
counts per address across both servers.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from roundtable.contract import events
from roundtable.session import RoomSession
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from tests.scale.bots import assert_clean, check_games, play_all
from tests.scale.nginx import render_site, start_nginx
from tests.scale.pgbouncer import PgBouncer, assert_bouncer_clean
from tests.support import (
    END,
    NO_RATE_LIMITS,
    Collector,
    Server,
    SseEvent,
    check_envelope,
    free_port,
    metric,
    redis_server,
    serve,
    sse_events,
    wait_for,
    wait_until_up,
)

JOINS_BURST = 3
SERVER_ENV = {
    # Through the suite's PgBouncer in transaction mode (tests/scale/conftest.py), as
    # docs/deploy.md sets a deployment up.
    "DATABASE_POOLER": "transaction",
    "TRUSTED_PROXIES": "127.0.0.1",
    "JOINS_BURST": str(JOINS_BURST),
    "JOINS_PER_MINUTE": "1",
    "CHAT_PER_SECOND": "100000",
    "CHAT_BURST": "100000",
    "CATCHUP_SECONDS": "0.3",
    "SSE_RETRY_MS": "100",
}


@dataclass
class Deployment:
    """nginx at `url` in front of two servers."""

    url: str
    servers: list[Server]
    database_url: str
    nginx_log: Path


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, pooled_url: str, bouncer: PgBouncer
) -> Iterator[Deployment]:
    """The tests' deployment (see `deployed`), shared by the module."""
    with deployed(tmp_path_factory.mktemp("proxy"), pooled_url, bouncer) as running:
        yield running


@contextmanager
def deployed(
    workdir: Path, database_url: str, bouncer: PgBouncer, settings: dict[str, str] = SERVER_ENV
) -> Iterator[Deployment]:
    """nginx (deploy/nginx.conf) in front of two servers, one database behind PgBouncer in
    transaction mode, one Redis; no log shows a prepared-statement error, a traceback or a 500."""
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(workdir))
        env = {**settings, "REDIS_URL": redis.url}
        servers = [stack.enter_context(serve(database_url, workdir / f"server{i}.log", env)) for i in (1, 2)]
        port = free_port()
        upstreams = " ".join(f"server {s.url.removeprefix('http://')};" for s in servers)
        site = render_site(
            {"LISTEN": f"127.0.0.1:{port}", "SERVER_NAME": "localhost", "UPSTREAMS": upstreams}
        )
        nginx = start_nginx(workdir, site)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url, nginx, workdir / "error.log")
            yield Deployment(url, servers, database_url, workdir / "error.log")
        finally:
            nginx.send_signal(signal.SIGQUIT)  # graceful: finish and exit
            try:
                nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
    assert_clean(*(server.log for server in servers))
    assert_bouncer_clean(bouncer)


@asynccontextmanager
async def client_from(address: str, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose connections leave from the local `address` (a loopback address
    of its own: a distinct client to nginx and to the servers)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30) as client:
        yield client


def auth(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}


async def new_room(http: httpx.AsyncClient) -> dict[str, Any]:
    created = await http.post("/v1/rooms", json={"name": "Proxied", "nickname": "Host", "ruleset": "mafia"})
    assert created.status_code == 201, created.text
    room: dict[str, Any] = created.json()
    return room


async def join(http: httpx.AsyncClient, room_id: str, nickname: str, **headers: str) -> httpx.Response:
    return await http.post(f"/v1/rooms/{room_id}/players", json={"nickname": nickname}, headers=headers)


async def chat(http: httpx.AsyncClient, session: dict[str, Any], text: str) -> int:
    said = await http.post(
        f"/v1/rooms/{session['room']['id']}/messages", json={"text": text}, headers=auth(session)
    )
    assert said.status_code == 201, said.text
    seq: int = said.json()["seq"]
    return seq


async def next_chat(stream: AsyncIterator[SseEvent]) -> dict[str, Any]:
    """The next chat message of an SSE stream (presence and other events skipped)."""
    async for event in stream:
        payload = check_envelope(event)
        if payload["type"] == "chat.message":
            return payload
    raise AssertionError("the stream ended")


async def next_ws_chat(ws: ClientConnection) -> dict[str, Any]:
    """The next chat message of a socket."""
    while True:
        payload: dict[str, Any] = json.loads(await ws.recv())
        if payload["type"] == "chat.message":
            return check_envelope(payload)


async def test_sse_and_websocket_streams_and_a_last_event_id_resume_work_through_nginx(
    deployment: Deployment,
) -> None:
    """Create, join and stream over SSE and over WebSocket through the proxy: each event
    arrives as soon as it is sent (no buffering), a command sent over the socket is answered,
    and an SSE stream resumed with Last-Event-ID gets exactly what came after it."""
    async with client_from("127.0.0.10", deployment.url) as http:
        host = await new_room(http)
        room_id = host["room"]["id"]
        guest = (await join(http, room_id, "Guest")).json()
        events_url = f"/v1/rooms/{room_id}/events"
        ws_url = f"{deployment.url.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws"
        # A browser's Origin on the proxy's own host is same-host: nginx passes Host through.
        async with (
            http.stream("GET", events_url, headers=auth(guest)) as response,
            ws_connect(
                ws_url,
                additional_headers=auth(host),
                origin=deployment.url,  # type: ignore[arg-type]
                local_addr=("127.0.0.10", 0),
            ) as ws,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = sse_events(response)
            assert (await anext(stream)).event == "snapshot"
            assert json.loads(await ws.recv())["type"] == "snapshot"
            for i in range(3):
                seq = await chat(http, host, f"proxied {i}")
                # Each event comes before the next is sent: nothing waits in a proxy buffer.
                sse = await asyncio.wait_for(next_chat(stream), 5)
                assert (sse["seq"], sse["data"]["text"]) == (seq, f"proxied {i}")
                over_ws = await asyncio.wait_for(next_ws_chat(ws), 5)
                assert (over_ws["seq"], over_ws["data"]["text"]) == (seq, f"proxied {i}")
            last_seen = seq
            # A command over the socket, through the proxy.
            await ws.send(json.dumps({"type": "chat", "request_id": "r1", "text": "over the socket"}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (ack["type"], ack["request_id"]) == ("ack", "r1"), ack
            said = await asyncio.wait_for(next_ws_chat(ws), 5)
            assert (said["seq"], said["data"]["text"]) == (ack["seq"], "over the socket")
        # Missed while away: the socket's message and two more.
        missed = [
            said["seq"],
            await chat(http, guest, "while away 1"),
            await chat(http, guest, "while away 2"),
        ]
        resumed: list[int] = []
        async with http.stream(
            "GET", events_url, headers={**auth(guest), "Last-Event-ID": str(last_seen)}
        ) as again:
            assert again.status_code == 200
            async for event in sse_events(again):
                payload = check_envelope(event)
                if payload["type"] == "snapshot":
                    continue
                resumed.append(payload["seq"])
                if payload["seq"] == missed[-1]:
                    break
        assert resumed == missed
    # The WebSocket handshake's client address is the client's too.
    logs = "".join(server.log.read_text() for server in deployment.servers)
    assert re.search(rf'127\.0\.0\.10:\d+ - "WebSocket /v1/rooms/{room_id}/ws"', logs), logs[-2000:]


async def test_a_body_over_the_limit_is_refused_by_nginx_with_the_servers_problem(
    deployment: Deployment,
) -> None:
    """nginx's body limit is the server's (MAX_BODY_BYTES, 64 KiB), and its refusal the same
    413 problem+json the server answers; a body at the limit passes through to the server."""
    async with client_from("127.0.0.12", deployment.url) as http:
        host = await new_room(http)
        url = f"/v1/rooms/{host['room']['id']}/messages"
        at_limit = b'{"text": "' + b"x" * (65536 - 12) + b'"}'
        assert len(at_limit) == 65536
        headers = {**auth(host), "Content-Type": "application/json"}
        by_server = await http.post(url, content=at_limit, headers=headers)
        assert by_server.status_code == 422, by_server.text  # the server read it (text too long)
        by_nginx = await http.post(url, content=at_limit + b" ", headers=headers)
        direct = await http.post(
            f"{deployment.servers[0].url}{url}", content=at_limit + b" ", headers=headers
        )
    for refused in (by_nginx, direct):
        assert refused.status_code == 413
        assert refused.headers["content-type"] == "application/problem+json"
    assert by_nginx.json() == direct.json()
    assert by_nginx.json()["code"] == "body_too_large"


async def test_the_joins_limit_counts_each_client_behind_nginx_not_the_proxy(deployment: Deployment) -> None:
    """Two clients behind the proxy, each with an allowance of its own: one exhausts its
    joins (429) while the other is still let in; the servers log the clients' addresses."""
    async with client_from("127.0.0.9", deployment.url) as owner:
        room_id = (await new_room(owner))["room"]["id"]
    async with (
        client_from("127.0.0.2", deployment.url) as busy,
        client_from("127.0.0.3", deployment.url) as other,
    ):
        for i in range(JOINS_BURST):
            assert (await join(busy, room_id, f"Busy{i}")).status_code == 201
        refused = await join(busy, room_id, "BusyMore")
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "rate_limited"
        assert (await join(other, room_id, "Other")).status_code == 201
    logs = "".join(server.log.read_text() for server in deployment.servers)
    assert re.search(rf'127\.0\.0\.2:\d+ - "POST /v1/rooms/{room_id}/players', logs), (
        "the log shows the proxy, not the client"
    )
    assert re.search(rf'127\.0\.0\.3:\d+ - "POST /v1/rooms/{room_id}/players', logs)


async def test_a_forged_x_forwarded_for_changes_nothing_straight_to_a_server_or_through_nginx(
    deployment: Deployment,
) -> None:
    """A client that is not a trusted proxy names another address in X-Forwarded-For, a new
    one on each join: straight to a server, the limit still counts its own address. Through
    nginx, the server takes the address nginx saw, even from a client on the proxy's own
    address (nginx replaces the header rather than appending to the client's)."""
    direct = deployment.servers[0].url
    async with client_from("127.0.0.9", deployment.url) as owner:
        room_id = (await new_room(owner))["room"]["id"]
    for address, base in (("127.0.0.4", direct), ("127.0.0.1", deployment.url)):
        async with client_from(address, base) as forger:
            codes = []
            for i in range(JOINS_BURST + 1):
                forged = f"198.51.100.{i + 1}"
                response = await join(forger, room_id, f"F{address[-1]}x{i}", **{"X-Forwarded-For": forged})
                codes.append(response.status_code)
            assert codes == [201] * JOINS_BURST + [429], (address, base, codes)


async def test_the_default_trusts_no_proxy_not_even_a_local_one(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Without TRUSTED_PROXIES a server believes nobody's X-Forwarded-For: a client on the
    same host (uvicorn's own default trusts 127.0.0.1) cannot pick its address either."""
    env = {key: value for key, value in SERVER_ENV.items() if key != "TRUSTED_PROXIES"}
    with serve(deployment.database_url, tmp_path / "untrusting.log", env) as server:
        async with client_from("127.0.0.1", server.url) as local:
            room_id = (await new_room(local))["room"]["id"]
            codes = [
                (
                    await join(local, room_id, f"Local{i}", **{"X-Forwarded-For": f"203.0.113.{i + 1}"})
                ).status_code
                for i in range(JOINS_BURST + 1)
            ]
    assert codes == [201] * JOINS_BURST + [429], codes


async def _watch(url: str, room_id: uuid.UUID, into: list[int]) -> None:
    """Follow a room as a spectator over SSE until its game ends, resuming through the proxy
    by Last-Event-ID whenever the stream breaks (the SDK does); collect the seqs received."""
    session = await RoomSession.spectate(url, room_id)
    try:
        async for item in session.events():
            if isinstance(item, events.Snapshot):
                continue
            into.append(item.seq)
            if item.type == "game.finished":
                return
    finally:
        await session.aclose()


async def _public_log(url: str, room_id: uuid.UUID, start: int) -> list[int]:
    """The seqs a spectator replaying the room after `start` receives, up to game.finished."""
    session = await RoomSession.spectate(url, room_id)
    seqs: list[int] = []
    try:
        async for item in session.events(after=start):
            assert not isinstance(item, events.Snapshot), "a replay has no snapshot"
            seqs.append(item.seq)
            if isinstance(item, events.GameFinishedEvent):
                return seqs
    finally:
        await session.aclose()
    raise AssertionError("the replay ended")  # pragma: no cover


async def test_bot_games_through_the_proxy_finish_when_a_server_is_killed_mid_game(
    pooled_url: str, bouncer: PgBouncer, direct_url: str, tmp_path: Path
) -> None:
    """Five 4-bot games at once through nginx, three over SSE and two over WebSocket, on both
    servers behind PgBouncer; once every game has started one server is killed: every game
    finishes with the winner its log records, and a spectator of each room, resuming through
    the proxy, received every public event once, in order (no gap, no duplicate)."""
    # 20 bots and 5 spectators join from one address (nginx's): no joins limit here.
    with deployed(tmp_path, pooled_url, bouncer, {**SERVER_ENV, **NO_RATE_LIMITS}) as deployment:
        await _games_with_a_kill(deployment, direct_url)


async def _games_with_a_kill(deployment: Deployment, direct_url: str) -> None:
    url, watched = deployment.url, dict[uuid.UUID, list[int]]()
    watchers: list[asyncio.Task[None]] = []

    def started(room_id: uuid.UUID) -> None:
        watched[room_id] = []
        watchers.append(asyncio.create_task(_watch(url, room_id, watched[room_id])))

    games = asyncio.create_task(play_all(url, [False, True, False, True, False], started))
    await wait_for(lambda: games.done() or (len(watched) == 5 and all(watched.values())), 30)
    assert not games.done(), games.result()  # a game that failed before the kill says why
    killed = deployment.servers[0]
    async with httpx.AsyncClient() as http:
        page = (await http.get(f"{killed.url}/metrics")).text
    # Round robin spread the streams: the server killed holds some of the games' clients.
    assert metric(page, "roundtable_open_streams", 'transport="sse"') > 0, page
    killed.kill()
    played = await games
    await asyncio.wait_for(asyncio.gather(*watchers), 30)
    for room_id, seqs in watched.items():
        assert seqs == sorted(set(seqs)), f"{room_id}: an event arrived twice or out of order"
        assert seqs == await _public_log(url, room_id, seqs[0] - 1), f"{room_id}: an event is missing"
    await asyncio.to_thread(check_games, direct_url, played)


async def test_a_server_killed_mid_stream_its_client_resumes_through_nginx_on_the_other(
    deployment: Deployment,
) -> None:
    """SIGKILL the server holding an SSE stream while chat keeps coming through the proxy:
    the client reconnects through nginx with Last-Event-ID, lands on the other server and
    receives every event after the last it saw, none twice, none missing; the chat itself
    fails over (nginx passes a refused connection to the next server). Last in this module:
    it leaves one server."""
    address = "127.0.0.11"
    async with client_from(address, deployment.url) as http:
        host = await new_room(http)
        room_id = host["room"]["id"]
        reader = (await join(http, room_id, "Reader")).json()
        got = Collector()
        reconnects = 0
        streaming = asyncio.Event()

        async def follow() -> None:
            nonlocal reconnects
            while not got.finished:
                headers = {**auth(reader), **({"Last-Event-ID": str(got.last)} if got.last else {})}
                try:
                    async with (
                        client_from(address, deployment.url) as own,
                        own.stream("GET", f"/v1/rooms/{room_id}/events", headers=headers) as response,
                    ):
                        assert response.status_code == 200, await response.aread()
                        async for event in sse_events(response):
                            got.add(check_envelope(event))
                            streaming.set()
                            if got.finished:
                                return
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    pass  # the server died under the stream: resume where it stopped
                reconnects += 1

        async def open_sse_streams() -> list[float]:
            pages = [(await http.get(f"{server.url}/metrics")).text for server in deployment.servers]
            return [metric(page, "roundtable_open_streams", 'transport="sse"') for page in pages]

        before = await open_sse_streams()
        sent: list[int] = []
        follower = asyncio.create_task(follow())
        await asyncio.wait_for(streaming.wait(), 10)
        # The server holding the stream: the one with one more open SSE stream than before.
        after = await open_sse_streams()
        holders = [s for s, was, now in zip(deployment.servers, before, after, strict=True) if now > was]
        assert len(holders) == 1, (before, after)
        killed = holders[0]
        survivor = next(s for s in deployment.servers if s is not killed)
        for i in range(60):
            if i == 20:
                killed.kill()  # between two messages: no command is lost in flight
            sent.append(await chat(http, host, f"message {i}"))
        sent.append(await chat(http, host, END))
        await asyncio.wait_for(follower, 20)
    assert reconnects >= 1, "the stream never broke: the killed server did not hold it"
    assert killed.process.poll() is not None
    assert survivor.process.poll() is None
    assert got.seqs == sorted(set(got.seqs)), "an event arrived twice or out of order"
    assert got.seqs == list(range(got.seqs[0], got.seqs[-1] + 1)), "an event is missing"
    assert set(sent) <= set(got.seqs)
