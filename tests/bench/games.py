"""Rooms of 8 playing real games back to back: the game rows of `make bench` (issue 16).

Every player holds a stream (SSE, or its WebSocket with `--transport ws`) and acts as soon as
the options it is given (the snapshot's `options`, then `options.changed`) list an action,
picking a listed option at random: over HTTP (`POST /v1/rooms/{id}/actions`), or as an
`action` command over its own WebSocket. When a room's game ends (`game.finished`), its players
start a new room (create, join, start) and go on, until the run's time is up.

Flat out, each player acts the moment it may (closed loop: latency from the send). At a fixed
`--rate`, actions are due at that rate (open loop): each tick sends the action of the player
that has waited longest for its turn, and latency counts from the tick; a tick with no player
ready (every room waiting on a deadline or on answers) is skipped and counted.

After the run, a drain: no more actions, then every stream's received seqs are compared with a
replay of the same player's stream from `?after=0` (same transport): `lost` counts the events
the replay holds that the live stream never received (`extra` the other way); with
BENCH_DEBUG=1 each stream that differs is printed to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import sys
import time
from collections import Counter, deque
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from tests.bench.loadgen import CpuMeter, RawHttp, percentiles, quiet_collector, server_frames, wait_until

# Short phase timers: nobody waits on them when every player acts at once, and a stuck phase
# (an action refused, a player slow) does not stall the room for a minute. Mafia's day has no
# action: it always lasts its timer.
SETTINGS: dict[str, dict[str, Any]] = {
    "mafia": {"max_players": 8, "night_seconds": 5, "day_seconds": 1, "vote_seconds": 5},
    "missions": {"max_players": 8, "propose_seconds": 5, "approve_seconds": 5, "mission_seconds": 5},
}
WS_EVENT = re.compile(rb'^\{"seq":(\d+),"room_id":"[^"]+","type":"([a-z._]+)"')


class Seat:
    """One player of one room: its token, its stream, what it received and what it may do."""

    def __init__(self, table: Table, player_id: str, token: str) -> None:
        self.table = table
        self.player_id = player_id
        self.token = token
        self.stream: GameStream | None = None
        self.received: list[tuple[int, float]] = []
        self.opened_after = 0  # the snapshot's last_seq: the live stream carries what follows
        self.options: list[dict[str, Any]] = []
        self.version = 0  # one more at every options message
        self.busy = False  # an action in flight
        self.queued = False  # waiting for a tick (open loop)
        self.finished_seq: int | None = None

    def options_arrived(self, options: list[dict[str, Any]]) -> None:
        self.options = options
        self.version += 1
        if options and not self.busy and not self.queued:
            self.table.game.ready(self)

    def game_finished(self, seq: int) -> None:
        self.finished_seq = seq
        self.options = []
        self.table.finished_seats += 1
        if self.table.finished_seats == len(self.table.seats):
            self.table.finished.set()


class Table:
    """One room and its 8 seats; `sent` maps each accepted action's seq to when it was due."""

    def __init__(self, game: Game, room_id: str) -> None:
        self.game = game
        self.room_id = room_id
        self.seats: list[Seat] = []
        self.sent: dict[int, float] = {}
        self.finished = asyncio.Event()
        self.finished_seats = 0
        self.cutoff = 0  # the last seq the lost check compares


class GameStream(asyncio.Protocol):
    """One stream of one seat: live (drives the player) or a replay from ?after=0 (collects seqs)."""

    def __init__(self, request: bytes, seat: Seat, replay: bool) -> None:
        self.request = request
        self.seat = seat
        self.replay = replay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened = loop.create_future()
        self.closed = loop.create_future()
        self.seqs: list[int] = []  # replay only
        if replay:  # a replay (?after=) has no snapshot
            self.opened.set_result(None)
        self.last_event = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.unanswered()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("the stream closed before its snapshot"))
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.replay and self.seat.finished_seq is None and self.seat.table.game.running:
            self.seat.table.game.streams_closed += 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def unanswered(self) -> None:
        """The stream is gone: commands still waiting for an answer will not get one."""

    def snapshot(self, data: dict[str, Any]) -> None:
        if self.replay:
            return
        self.seat.opened_after = data["last_seq"]
        if not self.opened.done():
            self.opened.set_result(None)
        self.seat.options_arrived(data["options"])

    def event(self, seq: int, kind: bytes, data: Any) -> None:
        """One event; `data()` decodes its `data` (only the events that need it pay for it)."""
        now = time.monotonic()
        self.last_event = now
        if self.replay:
            self.seqs.append(seq)
            return
        seat = self.seat
        seat.received.append((seq, now))
        if kind == b"options.changed":
            seat.options_arrived(data()["options"])
        elif kind == b"game.finished":
            seat.game_finished(seq)
            self.finish()

    def finish(self) -> None:
        """The game is over: this stream has nothing more to carry."""
        self.close()


class GameSse(GameStream):
    """SSE: the chunked body decoded, then whole `id:/event:/data:` blocks parsed."""

    @staticmethod
    def request_for(host: str, path: str, token: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()

    def __init__(self, request: bytes, seat: Seat, replay: bool) -> None:
        super().__init__(request, seat, replay)
        self.head_done = False
        self.body = b""

    def data_received(self, data: bytes) -> None:
        raw = self.buffer + data
        if not self.head_done:
            head, sep, raw = raw.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            if not head.startswith(b"HTTP/1.1 200"):
                self.buffer = b""
                self.close()
                return
            self.head_done = True
        # Transfer-Encoding: chunked.
        body = self.body
        while True:
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(raw[:line_end].split(b";")[0], 16)
            if len(raw) < line_end + 2 + size + 2:
                break
            body += raw[line_end + 2 : line_end + 2 + size]
            raw = raw[line_end + 2 + size + 2 :]
        self.buffer = raw
        *blocks, self.body = body.split(b"\n\n")
        for block in blocks:
            self.block(block)

    def block(self, block: bytes) -> None:
        seq, kind, payload = None, b"", b""
        for line in block.split(b"\n"):
            if line.startswith(b"id: "):
                seq = int(line[4:])
            elif line.startswith(b"event: "):
                kind = line[7:]
            elif line.startswith(b"data: "):
                payload = line[6:]
        if kind == b"snapshot":
            self.snapshot(json.loads(payload)["data"])
        elif seq is not None:
            self.event(seq, kind, lambda: json.loads(payload)["data"])


class GameWs(GameStream):
    """WebSocket: the server's frames parsed by hand; actions sent as commands, acks matched."""

    @staticmethod
    def request_for(host: str, path: str, token: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()

    def __init__(self, request: bytes, seat: Seat, replay: bool) -> None:
        super().__init__(request, seat, replay)
        self.upgraded = False
        self.acks: dict[str, asyncio.Future[tuple[int | None, str | None]]] = {}
        self.finishing = False

    def finish(self) -> None:
        # The action that ended the game may not be answered yet: close once it is.
        self.finishing = True
        if not self.acks:
            self.close()

    def unanswered(self) -> None:
        for future in self.acks.values():
            if not future.done():
                future.set_result((None, "stream_closed"))
        self.acks.clear()

    def answered(self) -> None:
        if self.finishing and not self.acks:
            self.close()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded:
            head, sep, buffer = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.buffer = b""
                self.close()
                return
            self.upgraded = True
        frames, self.buffer = server_frames(buffer)
        for opcode, payload in frames:
            if opcode == 1:
                self.message(payload)
            elif opcode == 9:
                self.send(payload, opcode=10)  # pong

    def message(self, payload: bytes) -> None:
        match = WS_EVENT.match(payload)
        if match:
            self.event(int(match.group(1)), match.group(2), lambda: json.loads(payload)["data"])
        elif payload.startswith(b'{"type":"snapshot"'):
            self.snapshot(json.loads(payload)["data"])
        elif payload.startswith(b'{"type":"ack"'):
            ack = json.loads(payload)
            self.acks.pop(ack["request_id"]).set_result((ack.get("seq"), None))
            self.answered()
        elif payload.startswith(b'{"type":"error"'):
            error = json.loads(payload)
            future = self.acks.pop(error["request_id"], None)
            if future is not None:
                future.set_result((None, error["code"]))
            self.answered()

    def send(self, payload: bytes, opcode: int = 1) -> None:
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, 0x80 | size])
        else:
            head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2)
        assert self.transport is not None
        self.transport.write(head + b"\0\0\0\0" + payload)

    async def action(self, request_id: str, action: dict[str, Any]) -> tuple[int | None, str | None]:
        """Send an action command; return the ack's seq, or the error's code."""
        self.acks[request_id] = answer = asyncio.get_running_loop().create_future()
        self.send(json.dumps({"type": "action", "request_id": request_id, "action": action}).encode())
        result: tuple[int | None, str | None] = await answer
        return result


def choose(rng: random.Random, options: list[dict[str, Any]]) -> dict[str, Any]:
    """Return an action among the listed options, at random."""
    option = rng.choice(options)
    action: dict[str, Any] = {"type": option["type"]}
    if option["type"] == "vote":
        targets = list(option["targets"]) + ([None] if option["abstain"] else [])
        action["target_player_id"] = rng.choice(targets)
    elif option["pick"]:
        action["player_ids"] = rng.sample(option["targets"], option["pick"])
    else:
        action["choice"] = rng.choice(option["choices"])
    return action


class Game:
    """One run: its rooms, its players' actions, its measurements."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = args.url
        parts = urlsplit(args.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.ws = args.transport == "ws"
        self.kind: type[GameSse] | type[GameWs] = GameWs if self.ws else GameSse
        self.rng = random.Random(args.seed)
        self.raw = RawHttp(args.url, 64)
        self.tables: list[Table] = []
        self.running = False
        self.stopped = asyncio.Event()
        self.enough = asyncio.Event()  # --until-games games have finished
        self.deadline = 0.0
        self.ready_seats: deque[Seat] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.answered: list[float] = []
        self.done = 0
        self.refused: Counter[str] = Counter()
        self.skipped_ticks = 0
        self.games_finished = 0
        self.streams_closed = 0
        self.requests = 0
        self.gate = asyncio.Semaphore(64)

    # Players.

    def ready(self, seat: Seat) -> None:
        """A player may act: now (flat out), or at the next free tick (open loop)."""
        if not self.running:
            return
        if self.args.rate:
            seat.queued = True
            self.ready_seats.append(seat)
        else:
            seat.busy = True
            self.spawn(self.act(seat, time.monotonic()))

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def act(self, seat: Seat, due: float) -> None:
        """Take one of the seat's options (it is marked busy until answered)."""
        version, table = seat.version, seat.table
        action = choose(self.rng, seat.options)
        self.requests += 1
        try:
            if self.ws:
                assert isinstance(seat.stream, GameWs)
                seq, code = await seat.stream.action(str(self.requests), action)
            else:
                body = json.dumps(action).encode()
                status, answer = await self.raw.post_status(
                    f"/v1/rooms/{table.room_id}/actions", body, seat.token
                )
                seq, code = (
                    (answer["seq"], None) if status == 201 else (None, answer.get("code", str(status)))
                )
        finally:
            seat.busy = False
        if seq is not None:
            self.answered.append(time.monotonic() - due)
            table.sent[seq] = due
            self.done += 1
        else:
            self.refused[code or "?"] += 1
        if seat.version != version and seat.options and not seat.queued:
            self.ready(seat)

    async def pace(self) -> None:
        """Open loop: one tick every 1/rate s, each sending the longest-waiting player's action."""
        start, i = time.monotonic(), 0
        while (due := start + i / self.args.rate) < self.deadline and not self.enough.is_set():
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            i += 1
            while self.ready_seats:
                seat = self.ready_seats.popleft()
                seat.queued = False
                if seat.options and not seat.busy:
                    seat.busy = True
                    self.spawn(self.act(seat, due))
                    break
            else:
                self.skipped_ticks += 1

    # Rooms.

    async def open_stream(self, seat: Seat, replay: bool) -> GameStream:
        path = f"/v1/rooms/{seat.table.room_id}/{'ws' if self.ws else 'events'}"
        if replay:
            path += "?after=0"
        request = self.kind.request_for(f"{self.host}:{self.port}", path, seat.token)
        loop = asyncio.get_running_loop()
        _, stream = await loop.create_connection(
            lambda: self.kind(request, seat, replay), self.host, self.port
        )
        return stream

    async def new_table(self, http: httpx.AsyncClient) -> Table:
        """Create a room of 8 and open its players' streams (not started yet)."""
        ruleset = self.args.game
        async with self.gate:
            body = {"name": "bench", "nickname": "p0", "ruleset": ruleset, "settings": SETTINGS[ruleset]}
            host = (await http.post("/v1/rooms", json=body)).json()
            table = Table(self, host["room"]["id"])
            table.seats.append(Seat(table, host["player"]["id"], host["token"]))
            for i in range(1, 8):
                joined = (
                    await http.post(f"/v1/rooms/{table.room_id}/players", json={"nickname": f"p{i}"})
                ).json()
                table.seats.append(Seat(table, joined["player"]["id"], joined["token"]))
            for seat in table.seats:
                seat.stream = await self.open_stream(seat, replay=False)
                await seat.stream.opened
        self.tables.append(table)
        return table

    async def start(self, http: httpx.AsyncClient, table: Table) -> None:
        started = await http.post(
            f"/v1/rooms/{table.room_id}/start", headers={"Authorization": f"Bearer {table.seats[0].token}"}
        )
        if started.status_code != 200:
            raise RuntimeError(started.text)

    async def room_loop(self, http: httpx.AsyncClient, table: Table) -> None:
        """Play the table's game, then new rooms back to back until time is up."""
        while self.running:
            await self.start(http, table)
            # A lost game.finished must not stall the bench: the lost check reports it.
            waits = [asyncio.ensure_future(table.finished.wait()), asyncio.ensure_future(self.stopped.wait())]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiting in pending:
                waiting.cancel()
            if table.finished.is_set():
                self.games_finished += 1
                if self.games_finished == self.args.until_games:
                    self.enough.set()
            if not self.running or time.monotonic() >= self.deadline:
                return
            table = await self.new_table(http)

    # The run.

    async def run(self) -> dict[str, Any]:
        args = self.args
        # Idle connections dropped well before uvicorn closes them (keep-alive, 5 s): a request
        # sent on one as the server closes it fails with a ReadError (it did, in 2 of 14 rows,
        # while tables waited on their streams' set-up).
        limits = httpx.Limits(max_connections=64, keepalive_expiry=2.0)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as http:
            first = await asyncio.gather(*(self.new_table(http) for _ in range(args.rooms_of_8)))
            await asyncio.sleep(0.5)
            quiet_collector()
            print("playing", file=sys.stderr, flush=True)
            meter = CpuMeter(args.server_pids)
            started = time.monotonic()
            self.deadline = started + args.duration
            self.running = True
            loops = [asyncio.create_task(self.room_loop(http, t)) for t in first]
            if args.rate:
                await self.pace()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.enough.wait(), args.duration)
            self.running = False
            self.stopped.set()
            # The actions sent before the end count, answered in time or not.
            await asyncio.gather(*list(self.tasks))
            elapsed = time.monotonic() - started
            cpu = meter.per_command(self.done)
            await asyncio.gather(*loops)
            print("checking", file=sys.stderr, flush=True)
            lost, extra, compared = await self.check(http)

        latency: list[float] = []
        for table in self.tables:
            for seat in table.seats:
                latency.extend(t - table.sent[s] for s, t in seat.received if s in table.sent)
        return {
            "game": args.game,
            "rooms": args.rooms_of_8,
            "transport": args.transport,
            "streams": 8 * args.rooms_of_8,
            "offered_per_s": args.rate or None,
            "actions": self.done,
            "actions_per_s": round(self.done / elapsed),
            "games_finished": self.games_finished,
            "answer": percentiles(self.answered),
            "delivery": percentiles(latency),
            "deliveries": len(latency),
            "cpu_ms_per_action": cpu,
            "refused": dict(self.refused),
            "skipped_ticks": self.skipped_ticks,
            "streams_closed": self.streams_closed,
            "events_compared": compared,
            "lost": lost,
            "extra": extra,
        }

    async def check(self, http: httpx.AsyncClient) -> tuple[int, int, int]:
        """Drain, then compare every live stream's seqs with a replay of it from ?after=0."""
        for table in self.tables:
            if not table.finished.is_set():
                state = await http.get(
                    f"/v1/rooms/{table.room_id}/state",
                    headers={"Authorization": f"Bearer {table.seats[0].token}"},
                )
                table.cutoff = state.json()["last_seq"]
        # Events up to each cutoff were committed before it was read: the live streams have
        # a moment to receive them (one still missing then is counted lost).
        await asyncio.sleep(1.5)
        for table in self.tables:
            for seat in table.seats:
                if seat.stream is not None:
                    seat.stream.close()
        gate = asyncio.Semaphore(256)
        lost = extra = compared = 0

        async def one(seat: Seat) -> None:
            nonlocal lost, extra, compared
            cutoff = seat.finished_seq or seat.table.cutoff
            async with gate:
                replay = await self.open_stream(seat, replay=True)
                # Everything up to the cutoff is in the log: the replay sends it at once. Stop
                # at the cutoff, or a second after the last event (the last ones hidden from
                # this player); every player sees the game start, so a replay is never empty.
                await wait_until(
                    lambda: (
                        (
                            bool(replay.seqs)
                            and (replay.seqs[-1] >= cutoff or time.monotonic() - replay.last_event > 1.0)
                        )
                        or replay.closed.done()
                    ),
                    30,
                )
                replay.close()
            window = range(seat.opened_after + 1, cutoff + 1)
            live = {s for s, _ in seat.received if s in window}
            again = {s for s in replay.seqs if s in window}
            if os.environ.get("BENCH_DEBUG") and (again - live or live - again):
                print(
                    "diff",
                    seat.player_id[:8],
                    seat.finished_seq,
                    cutoff,
                    seat.opened_after,
                    sorted(again - live),
                    sorted(live - again),
                    len(replay.seqs),
                    replay.closed.done(),
                    file=sys.stderr,
                )
            lost += len(again - live)
            extra += len(live - again)
            compared += len(again)

        await asyncio.gather(*(one(seat) for table in self.tables for seat in table.seats))
        return lost, extra, compared


async def rooms_playing(args: argparse.Namespace) -> dict[str, Any]:
    """Run the game mode (loadgen `--game`)."""
    return await Game(args).run()
