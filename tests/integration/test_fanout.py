"""Several server processes sharing PostgreSQL and Redis: doorbells, Redis outages, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from backend.games.projection import Viewer
from backend.persistence.events import NewEvent, read_events_of_rooms
from backend.realtime import hub as hub_module
from backend.realtime.broker import CHANNEL, RedisBroker
from backend.realtime.hub import Connection, Outgoing
from tests.conftest import create_room
from tests.integration.test_streams import chat, new_room, visible_seqs
from tests.support import (
    END,
    ROOT,
    Collector,
    append_to_log,
    append_to_logs,
    check_envelope,
    metric,
    redis_server,
    serve,
    sse_events,
    sse_stream,
    wait_for,
)

FAST = {"CHAT_PER_SECOND": "10000", "CHAT_BURST": "10000"}


async def receive_until(events: Any, seq: int, got: Collector) -> None:
    """Collect SSE events until `seq` has arrived."""
    async for event in events:
        got.add(check_envelope(event))
        if got.last >= seq:
            return


async def test_an_event_on_one_server_reaches_a_stream_on_another_even_without_redis(
    database_url: str, tmp_path: Path
) -> None:
    # The catch-up timer is slow here, so fast delivery proves the Redis doorbell did it.
    env = {**FAST, "CATCHUP_SECONDS": "2"}
    with (
        redis_server(tmp_path) as redis,
        serve(database_url, tmp_path / "a.log", {**env, "REDIS_URL": redis.url}) as a,
        serve(database_url, tmp_path / "b.log", {**env, "REDIS_URL": redis.url}) as b,
    ):
        async with httpx.AsyncClient(timeout=30) as http:
            host, guest = await new_room(http, a.url, "Guest")
            room_id = host["room"]["id"]
            got = Collector()
            async with sse_stream(http, f"{b.url}/v1/rooms/{room_id}/events", guest["token"]) as response:
                events = sse_events(response)
                got.add(check_envelope(await anext(events)))
                loop = asyncio.get_running_loop()

                # 1. Redis up: a command on A reaches B's stream at once.
                started = loop.time()
                seq = await chat(http, a.url, host, "via redis")
                await asyncio.wait_for(receive_until(events, seq, got), 5)
                assert loop.time() - started < 1.0
                before = metric(
                    (await http.get(f"{b.url}/metrics")).text, "roundtable_doorbells_received_total"
                )

                # 2. Redis down: commands still succeed, and every event still arrives, later.
                redis.stop()
                seqs = [await chat(http, a.url, host, f"no redis {i}") for i in range(5)]
                await asyncio.wait_for(receive_until(events, seqs[-1], got), 10)
                missed = metric(
                    (await http.get(f"{b.url}/metrics")).text, "roundtable_doorbells_missed_total"
                )
                assert missed >= 1

                # 3. Redis back: doorbells resume without a restart.
                redis.start()
                page = ""
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    started = loop.time()
                    seq = await chat(http, a.url, host, "redis is back")
                    await asyncio.wait_for(receive_until(events, seq, got), 10)
                    page = (await http.get(f"{b.url}/metrics")).text
                    if (
                        loop.time() - started < 0.5
                        and metric(page, "roundtable_doorbells_received_total") > before
                    ):
                        break
                assert 'roundtable_doorbells_received_total{source="redis"}' in page
                assert metric(page, "roundtable_doorbells_received_total") > before
        expected = await visible_seqs(database_url, room_id, guest["player"]["id"])
        assert got.seqs == [s for s in expected if got.seqs[0] <= s <= got.last]


async def test_a_killed_server_loses_nothing_for_a_client_that_resumes_elsewhere(
    database_url: str, tmp_path: Path
) -> None:
    env = {**FAST, "CATCHUP_SECONDS": "0.5"}
    with (
        redis_server(tmp_path) as redis,
        serve(database_url, tmp_path / "a.log", {**env, "REDIS_URL": redis.url}) as a,
        serve(database_url, tmp_path / "b.log", {**env, "REDIS_URL": redis.url}) as b,
    ):
        async with httpx.AsyncClient(timeout=30) as http:
            host, guest = await new_room(http, b.url, "Guest")
            room_id = host["room"]["id"]
            total = 200
            produced: list[int] = []

            async def produce() -> None:
                for i in range(total - 1):
                    produced.append(await chat(http, b.url, host, f"m{i}"))
                    await asyncio.sleep(0.002)
                produced.append(await chat(http, b.url, host, END))

            got = Collector()

            async def consume() -> None:
                # First on A, which is killed under the stream after 40 events...
                try:
                    async with sse_stream(
                        http, f"{a.url}/v1/rooms/{room_id}/events", guest["token"]
                    ) as response:
                        async for event in sse_events(response):
                            got.add(check_envelope(event))
                            if len(got.seqs) == 40:
                                a.kill()
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    pass  # the stream died with its server
                # ...then resumed on B with Last-Event-ID, as EventSource does by itself.
                while not got.finished:
                    url = f"{b.url}/v1/rooms/{room_id}/events"
                    async with sse_stream(http, url, guest["token"], after=got.last) as response:
                        async for event in sse_events(response):
                            got.add(check_envelope(event))
                            if got.finished:
                                break

            await asyncio.wait_for(asyncio.gather(produce(), consume()), 120)
        assert a.process.poll() is not None  # it really was killed
        expected = await visible_seqs(database_url, room_id, guest["player"]["id"])
        assert got.seqs == [s for s in expected if got.seqs[0] <= s <= got.last]
        assert got.last >= produced[-1]
        assert len([s for s in produced if s in got.seqs]) >= total - 20  # all but those before the snapshot


async def test_a_client_that_never_reads_does_not_delay_the_others(database_url: str, tmp_path: Path) -> None:
    env = {**FAST, "STREAM_QUEUE_SIZE": "4"}
    with serve(database_url, tmp_path / "server.log", env) as server:
        async with httpx.AsyncClient(timeout=30) as http:
            host, guest = await new_room(http, server.url, "Guest")
            room_id = host["room"]["id"]
            path = f"/v1/rooms/{room_id}/events"
            # A stalled client: a tiny receive window, and it never reads past the headers.
            port = int(server.url.rsplit(":", 1)[1])
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", port))
            stalled.sendall(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {guest['token']}\r\n\r\n".encode()
            )
            got = Collector()
            async with sse_stream(http, f"{server.url}{path}", host["token"]) as response:
                events = sse_events(response)
                got.add(check_envelope(await anext(events)))
                text = "x" * 480
                loop = asyncio.get_running_loop()
                slowest = 0.0
                for i in range(300):
                    started = loop.time()
                    seq = await chat(http, server.url, host, END if i == 299 else f"{i} {text}")
                    await asyncio.wait_for(receive_until(events, seq, got), 5)
                    slowest = max(slowest, loop.time() - started)
            assert got.finished
            assert slowest < 1.0  # the stalled stream never held the others up
            stalled.close()
        # Closing it once its queue overflows is shown in tests/unit/test_connections.py: the
        # kernel buffers far more than these events before a send here would block.


def test_several_workers_without_redis_refuse_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"WORKERS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "backend", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "REDIS_URL" in done.stderr


def sse_payloads(raw: bytes) -> list[dict[str, Any]]:
    """Return the data of every complete SSE event in a raw chunked HTTP response."""
    body = raw.partition(b"\r\n\r\n")[2]
    text = b""
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        size = int(size_line, 16) if sep else 0
        if size == 0 or len(rest) < size:
            break  # the end, or a chunk cut short
        text, body = text + rest[:size], rest[size + 2 :]
    blocks = text.split(b"\n\n")[:-1]  # the last is incomplete (or empty)
    return [
        json.loads(line[6:]) for block in blocks for line in block.split(b"\n") if line.startswith(b"data: ")
    ]


async def test_a_connection_that_falls_behind_is_closed_and_resumes_without_loss(
    database_url: str, tmp_path: Path
) -> None:
    # A client that stops reading. The server writes to it until the kernel holds all it will
    # (megabytes, over loopback); what follows waits in the connection's queue, one event here,
    # and the next one overflows it: the server closes the stream rather than buffer more.
    # Thousands of events are appended straight to the log, found by the catch-up timer.
    env = {**FAST, "STREAM_QUEUE_SIZE": "1", "CATCHUP_SECONDS": "0.2"}
    with serve(database_url, tmp_path / "server.log", env) as server:
        async with httpx.AsyncClient(timeout=30) as http:
            host, guest = await new_room(http, server.url, "Guest")
            room_id = host["room"]["id"]
            path = f"/v1/rooms/{room_id}/events"
            loop = asyncio.get_running_loop()
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.setblocking(False)
            await loop.sock_connect(stalled, ("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
            request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {guest['token']}\r\n\r\n"
            await loop.sock_sendall(stalled, request.encode())
            raw = b""
            while b"event: snapshot" not in raw:
                raw += await loop.sock_recv(stalled, 65536)
            texts = [f"{i} {'x' * 480}" for i in range(8000)] + [END]
            speaker = host["player"]["id"]
            chats = [
                NewEvent("chat.message", {"player_id": speaker, "text": t, "channel": "room"}) for t in texts
            ]
            await append_to_log(database_url, room_id, chats)
            await wait_for(
                lambda: (
                    metric(httpx.get(f"{server.url}/metrics").text, "roundtable_slow_consumers_closed_total")
                    >= 1
                ),
                within=60,
            )
            # What it was sent before the close arrives, then the end of the stream.
            while chunk := await asyncio.wait_for(loop.sock_recv(stalled, 1 << 20), 30):
                raw += chunk
            stalled.close()
            got = Collector()
            for payload in sse_payloads(raw):
                got.add(check_envelope(payload))
            assert got.seqs
            assert not got.finished
            # Resuming from the last seq received delivers the rest, nothing twice.
            while not got.finished:
                async with sse_stream(
                    http, f"{server.url}{path}", guest["token"], after=got.last
                ) as response:
                    async for event in sse_events(response):
                        got.add(check_envelope(event))
                        if got.finished:
                            break
        # Presence changes of the guest's reconnects may follow END; they are not this test's.
        expected = await visible_seqs(database_url, room_id, guest["player"]["id"])
        assert got.seqs == [s for s in expected if got.seqs[0] <= s <= got.last]


async def test_presence_counts_streams_on_every_server(database_url: str, tmp_path: Path) -> None:
    env = {**FAST, "CATCHUP_SECONDS": "0.2", "PRESENCE_GRACE_SECONDS": "0.3"}
    with (
        serve(database_url, tmp_path / "a.log", env) as a,
        serve(database_url, tmp_path / "b.log", env) as b,
    ):
        async with httpx.AsyncClient(timeout=30) as http:
            host, guest = await new_room(http, a.url, "Guest")
            room_id, guest_id = host["room"]["id"], guest["player"]["id"]
            path = f"/v1/rooms/{room_id}/events"
            async with sse_stream(http, f"{a.url}{path}", host["token"]) as watched:
                host_events = sse_events(watched)
                await anext(host_events)
                async with sse_stream(http, f"{b.url}{path}", guest["token"]) as on_b:
                    b_events = sse_events(on_b)  # keep it referenced: collecting it closes the stream
                    await anext(b_events)
                    async with sse_stream(http, f"{a.url}{path}", guest["token"]) as on_a:
                        a_events = sse_events(on_a)
                        await anext(a_events)
                    await asyncio.sleep(1.0)  # A's stream is closed, past the grace period
                    middle = await chat(http, a.url, host, "B still streams")
                await asyncio.sleep(1.0)  # now the last one is closed too
                last = await chat(http, a.url, host, END)
                seen: list[tuple[int, bool]] = []
                async for event in host_events:
                    payload = check_envelope(event)
                    if payload["type"] == "presence.changed" and payload["data"]["player_id"] == guest_id:
                        seen.append((payload["seq"], payload["data"]["connected"]))
                    if payload["seq"] >= last:
                        break
        assert [c for s, c in seen if s < middle] == [True]  # closing A's stream changed nothing
        assert [c for s, c in seen if s > middle] == [False]


async def test_idle_streams_get_heartbeat_comments(database_url: str, tmp_path: Path) -> None:
    with serve(database_url, tmp_path / "server.log", {"HEARTBEAT_SECONDS": "0.3"}) as server:
        async with httpx.AsyncClient(timeout=30) as http:
            (host,) = await new_room(http, server.url)
            url = f"{server.url}/v1/rooms/{host['room']['id']}/events"
            async with sse_stream(http, url, host["token"]) as response:
                lines = response.aiter_lines()

                async def heartbeats() -> int:
                    count = 0
                    async for line in lines:
                        count += line.startswith(":")
                        if count == 2:
                            return count
                    return count

                assert await asyncio.wait_for(heartbeats(), 3) == 2


class DoorbellLog:
    """Stands in for a worker's hub: records the doorbells its broker rings."""

    def __init__(self) -> None:
        self.rung: list[tuple[uuid.UUID, int, str]] = []
        self.subscribed = False

    def doorbell(self, room_id: uuid.UUID, seq: int, source: str = "local") -> None:
        self.rung.append((room_id, seq, source))

    async def catch_up(self) -> None:
        self.subscribed = True


async def test_doorbells_rung_together_go_out_as_one_redis_message_and_ring_every_room(
    tmp_path: Path,
) -> None:
    """Commands that commit on the same turn of the loop publish one message, the newest seq
    per room; the other worker rings its hub for each room in it. The commands do not wait."""
    with redis_server(tmp_path) as redis:
        here, there = DoorbellLog(), DoorbellLog()
        sender = RedisBroker(here, redis.url)  # type: ignore[arg-type]
        receiver = RedisBroker(there, redis.url)  # type: ignore[arg-type]
        watcher = Redis.from_url(redis.url)
        pubsub = watcher.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(CHANNEL)
        await receiver.start()
        try:
            await wait_for(lambda: there.subscribed)
            rooms = [uuid.uuid4() for _ in range(3)]
            for room, seq in ((rooms[0], 5), (rooms[1], 7), (rooms[0], 6), (rooms[2], 1)):
                sender.publish(room, seq)
            assert [seq for _, seq, _ in here.rung] == [5, 7, 6, 1]  # this worker's hub at once
            await wait_for(lambda: len(there.rung) >= 3)
            assert sorted(there.rung) == sorted(
                [(rooms[0], 6, "redis"), (rooms[1], 7, "redis"), (rooms[2], 1, "redis")]
            )
            messages = []
            for _ in range(5):  # a None may also be the subscription's own reply, skipped
                if (message := await pubsub.get_message(timeout=0.1)) is not None:
                    messages.append(message["data"].decode())
            assert len(messages) == 1
            assert messages[0].count("\n") == 2
        finally:
            await receiver.stop()
            await sender.stop()
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await watcher.aclose()


async def test_rooms_rung_together_are_read_in_one_statement(
    client: httpx.AsyncClient, app: Any, database_url: str, monkeypatch: Any
) -> None:
    """Doorbells from another worker for several rooms on one turn of the loop: this worker
    reads all their new events in one statement, and each stream gets its own room's, in order."""
    realtime = app.state.realtime
    rooms = [await create_room(client, name=f"r{i}") for i in range(3)]
    room_ids = [room["room"]["id"] for room in rooms]
    streams = [
        Connection(uuid.UUID(room_id), Viewer(player_id="watcher"), "sse", 100) for room_id in room_ids
    ]
    reads: list[list[uuid.UUID]] = []

    async def counted(conn: Any, after: dict[uuid.UUID, int], limit: int = 1000) -> Any:
        reads.append(sorted(after))
        return await read_events_of_rooms(conn, after, limit)

    monkeypatch.setattr(hub_module, "read_events_of_rooms", counted)
    for stream in streams:
        await realtime.hub.register(stream)
    try:
        said = {"player_id": rooms[0]["player"]["id"], "text": "elsewhere", "channel": "room"}
        last = await append_to_logs(database_url, {r: [NewEvent("chat.message", said)] * 2 for r in room_ids})
        for room_id in room_ids:  # as the Redis subscription rings them, on one turn
            realtime.hub.doorbell(uuid.UUID(room_id), last[room_id], source="redis")
        for stream, room_id in zip(streams, room_ids, strict=True):
            got: list[int] = []
            while len(got) < 2:
                got += [
                    item.seq
                    for item in await asyncio.wait_for(stream.next_batch(), 5)
                    if isinstance(item, Outgoing)
                ]
            assert got == [last[room_id] - 1, last[room_id]]
        assert reads == [sorted(uuid.UUID(r) for r in room_ids)]
    finally:
        for stream in streams:
            realtime.hub.unregister(stream)
