"""Load generator (its own process): open N streams to a room, drive commands, measure delivery.

    python -m tests.bench.loadgen --url http://127.0.0.1:8000 --streams 1000 --transport sse --server-pids 123

Prints one JSON object: command-to-delivery latency at every subscriber (p50/p99/max),
delivered events per second under a burst, and the server's RSS per open stream. With
`--rooms-of-8 R` it instead fills R rooms of 8 players, one stream per player, and drives
commands across all rooms (as HTTP requests with SSE streams; with `--transport ws`, as
commands over each player's own WebSocket).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import httpx
import uvloop

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SSE_EVENT = re.compile(rb"id: (\d+)\nevent: ([a-z.]+)\n")
WS_CHAT = re.compile(rb'^\{"seq":(\d+),"room_id":"[^"]+","type":"chat\.message"')


@dataclass
class Deliveries:
    """Receive times of chat events, per (room, seq), at every subscriber."""

    received: list[tuple[int, int, float]] = field(default_factory=list)
    ready: int = 0

    def got(self, room: int, seq: int) -> None:
        self.received.append((room, seq, time.monotonic()))


class StreamClient(asyncio.Protocol):
    """A lean subscriber of one stream: writes its hand-built request, parses what comes back
    with little CPU (so the server, not the generator, is measured); `opened` resolves when
    the snapshot arrives, or fails if the server closes first."""

    def __init__(self, request: bytes, room: int, deliveries: Deliveries) -> None:
        self.request = request
        self.room = room
        self.deliveries = deliveries
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.opened = asyncio.get_running_loop().create_future()

    @staticmethod
    def request_for(host: str, path: str, token: str) -> bytes:
        """Return the request that opens the stream."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("the stream closed before its snapshot"))

    def snapshot_arrived(self) -> None:
        self.deliveries.ready += 1
        self.opened.set_result(None)


def server_frames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split a server's unmasked WebSocket frames off `buffer`: (opcode, payload) of each
    whole frame, and what is left of a frame not yet whole."""
    frames = []
    while len(buffer) >= 2:
        opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(buffer[2:4]), 4
        elif length == 127:
            length, start = int.from_bytes(buffer[2:10]), 10
        if len(buffer) < start + length:
            break
        frames.append((opcode, buffer[start : start + length]))
        buffer = buffer[start + length :]
    return frames, buffer


class SseProtocol(StreamClient):
    """SSE: finds `id:`/`event:` lines in the raw chunked stream."""

    @staticmethod
    def request_for(host: str, path: str, token: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        last = 0
        for match in SSE_EVENT.finditer(buffer):
            kind = match.group(2)
            if kind == b"chat.message":
                self.deliveries.got(self.room, int(match.group(1)))
            elif kind == b"snapshot":
                self.snapshot_arrived()
            last = match.end()
        # Only a partial `id:` line can straddle two reads, and it is short.
        self.buffer = buffer[max(last, len(buffer) - 128) :]


class WsProtocol(StreamClient):
    """WebSocket: the server's (unmasked) frames parsed by hand, chat commands sent as masked
    text frames and their acks matched by request_id."""

    def __init__(self, request: bytes, room: int, deliveries: Deliveries) -> None:
        super().__init__(request, room, deliveries)
        self.upgraded = False
        self.acks: dict[str, asyncio.Future[int]] = {}

    @staticmethod
    def request_for(host: str, path: str, token: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded:
            head, sep, buffer = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(head.decode(errors="replace"))
            self.upgraded = True
        frames, self.buffer = server_frames(buffer)
        for opcode, payload in frames:
            if opcode == 1:
                self.message(payload)
            elif opcode == 9:
                self.send(payload, opcode=10)  # pong

    def message(self, payload: bytes) -> None:
        match = WS_CHAT.match(payload)
        if match:
            self.deliveries.got(self.room, int(match.group(1)))
        elif payload.startswith(b'{"type":"snapshot"'):
            self.snapshot_arrived()
        elif payload.startswith(b'{"type":"ack"'):
            ack = json.loads(payload)
            self.acks.pop(ack["request_id"]).set_result(ack["seq"])
        elif payload.startswith(b'{"type":"error"'):
            error = json.loads(payload)
            self.acks.pop(error["request_id"]).set_exception(RuntimeError(error["detail"]))

    def send(self, payload: bytes, opcode: int = 1) -> None:
        """Send one frame, masked with a zero key (clients must mask; any key will do)."""
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, 0x80 | size])
        else:
            head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2)
        assert self.transport is not None
        self.transport.write(head + b"\0\0\0\0" + payload)

    async def chat(self, request_id: str, text: str) -> int:
        """Send a chat command; return the seq its ack names."""
        self.acks[request_id] = answer = asyncio.get_running_loop().create_future()
        self.send(json.dumps({"type": "chat", "request_id": request_id, "text": text}).encode())
        seq: int = await answer
        return seq


Client = TypeVar("Client", bound=StreamClient)


async def open_stream(
    kind: type[Client], url: str, path: str, token: str, room: int, deliveries: Deliveries
) -> Client:
    """Open one stream; return once its snapshot arrived."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = kind.request_for(f"{host}:{port}", path, token)
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: kind(request, room, deliveries), host, port)
    await protocol.opened
    return protocol


class RawHttp:
    """Keep-alive HTTP/1.1 connections with hand-built requests: the load generator's CPU per
    command is a fraction of a general client's, so the server, not the client, is measured."""

    def __init__(self, url: str, size: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.size = size
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.opened = 0

    async def post(self, path: str, body: bytes, token: str) -> dict[str, Any]:
        """POST a JSON body; return the decoded JSON answer."""
        return (await self.post_status(path, body, token))[1]

    async def post_status(self, path: str, body: bytes, token: str) -> tuple[int, dict[str, Any]]:
        """POST a JSON body; return the status and the decoded JSON answer."""
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            self.idle.put_nowait(await asyncio.open_connection(self.host, self.port))
        reader, writer = await self.idle.get()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        try:
            for attempt in range(2):
                try:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    # The server closed the kept-alive connection (its keep-alive timer ran out
                    # while its loop was busy): as any client, send again on a new one.
                    writer.close()
                    if attempt:
                        raise
                    reader, writer = await asyncio.open_connection(self.host, self.port)
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            answer: dict[str, Any] = json.loads(await reader.readexactly(length))
            return int(head[9:12]), answer
        finally:
            self.idle.put_nowait((reader, writer))


async def make_room(http: httpx.AsyncClient, players: int) -> tuple[str, list[str]]:
    """Create a room with `players` players; return its id and their tokens."""
    body = {
        "name": "bench",
        "nickname": "p0",
        "ruleset": "mafia",
        "settings": {"max_players": max(4, players)},
    }
    host = (await http.post("/v1/rooms", json=body)).json()
    room_id, tokens = host["room"]["id"], [host["token"]]
    for i in range(1, players):
        joined = await http.post(f"/v1/rooms/{room_id}/players", json={"nickname": f"p{i}"})
        tokens.append(joined.json()["token"])
    return room_id, tokens


def process_tree(pids: list[int]) -> list[int]:
    """Return the processes and all their descendants."""
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return seen


def rss_kib(pids: list[int]) -> int:
    """Return the resident memory of the processes and their descendants, in KiB."""
    total = 0
    for pid in process_tree(pids):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        except (FileNotFoundError, ProcessLookupError, AttributeError):
            continue
    return total


def percentiles(values: list[float]) -> dict[str, float]:
    """Return p50, p99 and max, in milliseconds."""
    if not values:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": round(ordered[-1] * 1000, 2)}


def quiet_collector() -> None:
    """Keep CPython's cyclic collector out of the measurement: this one process stands in for
    thousands of browsers, and a full collection over all their streams' objects would pause
    every one of them at once (tens of ms at 5,000 streams), which no real client does. The
    run is short and its objects (receive times) hold no cycles: freeze and stop collecting."""
    gc.collect()
    gc.freeze()
    gc.disable()


async def wait_until(predicate: Any, limit: float) -> bool:
    """Wait until `predicate()` holds, at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def open_streams(
    url: str, transport: str, rooms: list[tuple[str, list[str]]], per_room: int, deliveries: Deliveries
) -> list[Any]:
    """Open `per_room` streams in each room, spread over its players' tokens; return them in
    order (room by room, player by player). Like clients after a restart, at most 64 at a time
    are opening, and one the server turns away (1013, 503) tries again a little later."""
    gate = asyncio.Semaphore(64)
    kind: type[StreamClient] = SseProtocol if transport == "sse" else WsProtocol

    async def one(index: int, room_id: str, token: str) -> StreamClient:
        path = f"/v1/rooms/{room_id}/{'events' if transport == 'sse' else 'ws'}"
        for attempt in range(10):
            try:
                async with gate:
                    return await open_stream(kind, url, path, token, index, deliveries)
            except ConnectionError:
                await asyncio.sleep(0.2 * 2**attempt)
        raise RuntimeError(f"a {transport} stream did not open in 10 attempts")

    return await asyncio.gather(
        *(
            one(i, room_id, tokens[k % len(tokens)])
            for i, (room_id, tokens) in enumerate(rooms)
            for k in range(per_room)
        )
    )


def close_all(handles: list[StreamClient]) -> None:
    """Close every stream open_streams opened."""
    for handle in handles:
        if handle.transport is not None:
            handle.transport.close()


async def one_room(args: argparse.Namespace) -> dict[str, Any]:
    """N streams on one room: latency at low rate, then throughput under a burst."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=args.url, timeout=60, limits=limits) as http:
        room_id, tokens = await make_room(http, 20)
        rss_before = rss_kib(args.server_pids)
        deliveries = Deliveries()
        handles = await open_streams(args.url, args.transport, [(room_id, tokens)], args.streams, deliveries)
        opened = await wait_until(lambda: deliveries.ready >= args.streams, 120)
        await asyncio.sleep(1.0)
        quiet_collector()
        rss_after = rss_kib(args.server_pids)
        sent: dict[int, float] = {}
        raw = RawHttp(args.url, 8)
        path = f"/v1/rooms/{room_id}/messages"

        answered: list[float] = []

        async def command(i: int) -> None:
            body = json.dumps({"text": f"bench {i}"}).encode()
            t0 = time.monotonic()
            answer = await raw.post(path, body, tokens[i % len(tokens)])
            answered.append(time.monotonic() - t0)
            sent[answer["seq"]] = t0

        # A fresh server's first command prepares its statements and runs code paths for the
        # first time (~5-20 ms here): timed and reported on its own, then the
        # steady state is measured.
        await command(-1)
        cold_ms = round(answered.pop() * 1000, 2)
        await wait_until(lambda: len(deliveries.received) >= args.streams, 30)
        deliveries.received.clear()
        sent.clear()
        await asyncio.sleep(args.gap)

        # Latency: one command at a time, spaced, so queueing does not dominate.
        for i in range(args.commands):
            await command(i)
            await asyncio.sleep(args.gap)
        await wait_until(lambda: len(deliveries.received) >= args.streams * args.commands, 60)
        latency = [t - sent[seq] for _, seq, t in deliveries.received if seq in sent]
        lost = args.streams * args.commands - len(latency)
        # Where the time goes: the command's own answer, then the first and the last subscriber.
        first: dict[int, float] = {}
        for _, seq, t in deliveries.received:
            if seq in sent:
                first[seq] = min(first.get(seq, t), t)
        breakdown = {
            "answer_p50_ms": percentiles(answered)["p50_ms"],
            "answer_max_ms": percentiles(answered)["max_ms"],
            "first_command_ms": cold_ms,
            "first_delivery_p50_ms": percentiles([t - sent[s] for s, t in first.items()])["p50_ms"],
        }

        # Throughput: a burst of commands from 8 concurrent senders.
        deliveries.received.clear()
        sent.clear()
        burst, started = args.burst, time.monotonic()
        queue = list(range(burst))

        async def sender() -> None:
            while queue:
                await command(queue.pop())

        await asyncio.gather(*(sender() for _ in range(8)))
        commands_done = time.monotonic()
        await wait_until(lambda: len(deliveries.received) >= args.streams * burst, 120)
        elapsed = (deliveries.received[-1][2] if deliveries.received else time.monotonic()) - started
        close_all(handles)
        return {
            "streams": args.streams,
            "transport": args.transport,
            "opened": opened,
            "latency": percentiles(latency),
            **breakdown,
            "undelivered": lost,
            "deliveries_per_s": round(len(deliveries.received) / elapsed),
            "burst_commands_per_s": round(burst / (commands_done - started)),
            "rss_kib_per_stream": round((rss_after - rss_before) / max(1, args.streams), 1),
            "rss_mib_total": round(rss_after / 1024, 1),
        }


def cpu_seconds(pids: list[int]) -> float:
    """Return the CPU time (user + system) the processes have used, in seconds."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def processes_named(name: str) -> list[int]:
    """Return the pids of every process whose command name is `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


class CpuMeter:
    """CPU time used while it runs, by the server, PostgreSQL, Redis and this generator: where
    the machine's cores go per command (the machine is shared by all four)."""

    def __init__(self, server_pids: list[int]) -> None:
        self.groups = {
            "server": process_tree(server_pids),
            "postgres": processes_named("postgres"),
            "redis": processes_named("redis-server"),
        }
        self.start = {name: cpu_seconds(pids) for name, pids in self.groups.items()}
        self.own = time.process_time()
        self.wall = time.monotonic()

    def per_command(self, commands: int) -> dict[str, float]:
        """Return the milliseconds of CPU each used per command since the meter started, and
        the cores all of them kept busy."""
        used = {name: cpu_seconds(pids) - self.start[name] for name, pids in self.groups.items()}
        used["load generator"] = time.process_time() - self.own
        wall = time.monotonic() - self.wall
        result = {name: round(1000 * seconds / max(1, commands), 3) for name, seconds in used.items()}
        result["cores busy"] = round(sum(used.values()) / wall, 2)
        return result


async def rooms_of_8(args: argparse.Namespace) -> dict[str, Any]:
    """Many rooms of 8, a stream per player, commands across all rooms: as fast as `--senders`
    concurrent senders go (closed loop), or at a fixed `--rate` per second (open loop: each
    command's latency counts from when it was due, so a server falling behind shows)."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=args.url, timeout=60, limits=limits) as http:
        gate = asyncio.Semaphore(16)

        async def room() -> tuple[str, list[str]]:
            async with gate:
                return await make_room(http, 8)

        rooms = await asyncio.gather(*(room() for _ in range(args.rooms_of_8)))
        deliveries = Deliveries()
        handles = await open_streams(args.url, args.transport, list(rooms), 8, deliveries)
        await wait_until(lambda: deliveries.ready >= 8 * len(rooms), 120)
        await asyncio.sleep(1.0)
        quiet_collector()
        sent: dict[tuple[int, int], float] = {}
        done = 0
        raw = RawHttp(args.url, args.senders)

        async def command(i: int, due: float) -> None:
            nonlocal done
            index = i % len(rooms)
            room_id, tokens = rooms[index]
            player = (i // len(rooms)) % 8
            if args.transport == "ws":  # the command goes over the player's own socket
                seq = await handles[index * 8 + player].chat(str(i), f"r{i}")
            else:
                body = json.dumps({"text": f"r{i}"}).encode()
                seq = (await raw.post(f"/v1/rooms/{room_id}/messages", body, tokens[player]))["seq"]
            sent[(index, seq)] = due
            done += 1

        async def sender(worker: int, deadline: float) -> None:
            i = worker
            while time.monotonic() < deadline:
                await command(i, time.monotonic())
                i += args.senders

        async def paced(deadline: float) -> None:
            start, pending, i = time.monotonic(), set(), 0
            while (due := start + i / args.rate) < deadline:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.create_task(command(i, due))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.gather(*pending)

        # Warm-up, not measured: every player speaks once, as players do before a room is busy,
        # so the run measures steady state rather than 1,200 first messages at once (each
        # reads its speaker from the database before the server knows them).
        warm = list(range(8 * len(rooms)))

        async def warm_up() -> None:
            while warm:
                await command(warm.pop(), time.monotonic())

        await asyncio.gather(*(warm_up() for _ in range(args.senders)))
        await wait_until(lambda: len(deliveries.received) >= 8 * done, 60)
        await asyncio.sleep(0.5)
        deliveries.received.clear()
        sent.clear()
        done = 0

        print("sending", file=sys.stderr, flush=True)
        meter = CpuMeter(args.server_pids)
        started = time.monotonic()
        deadline = started + args.duration
        if args.rate:
            await paced(deadline)
        else:
            await asyncio.gather(*(sender(w, deadline) for w in range(args.senders)))
        elapsed = time.monotonic() - started
        await wait_until(lambda: len(deliveries.received) >= 8 * done, 60)
        cpu = meter.per_command(done)
        latency = [t - sent[(r, s)] for r, s, t in deliveries.received if (r, s) in sent]
        close_all(handles)
        return {
            "rooms": len(rooms),
            "transport": args.transport,
            "streams": 8 * len(rooms),
            "offered_per_s": args.rate or None,
            "commands_per_s": round(done / elapsed),
            "latency": percentiles(latency),
            "cpu_ms_per_command": cpu,
            "undelivered": 8 * done - len(latency),
        }


def main() -> None:
    """Run one measurement and print it as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--server-pids", type=int, nargs="*", default=[])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--transport", choices=["sse", "ws"], default="sse")
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.05)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--rooms-of-8", type=int, default=0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0, help="commands per second (open loop)")
    parser.add_argument("--game", choices=["mafia", "missions"], help="rooms of 8 play this game")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--until-games", type=int, default=0, help="end once this many games finished")
    parser.add_argument("--spectators", type=int, default=0, help="watch the first room's game on SSE")
    args = parser.parse_args()
    # uvloop, as the server runs: the generator's own CPU per delivery stays out of the numbers.
    if args.game and args.spectators:
        from tests.bench.spectators import watched_game

        result = uvloop.run(watched_game(args))
    elif args.game:
        from tests.bench.games import rooms_playing

        result = uvloop.run(rooms_playing(args))
    else:
        result = uvloop.run(rooms_of_8(args) if args.rooms_of_8 else one_room(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
