"""A streamer's room: 8 players play a game while thousands of spectators watch it over SSE
(issue 17's bench row, loadgen `--game G --spectators N`).

The players are the game rows' (tests/bench/games.py): they act as soon as they may. Before the
game starts, N spectators register (`POST /v1/rooms/{id}/spectators`) and open their streams;
the server's resident memory before and after they opened gives KiB per spectator. Every action
whose event is public reaches every spectator: `last spectator` is, per such event, the time from
when the action was due to its arrival at the slowest spectator. Afterwards each spectator's
seqs are compared with a fresh spectator replay from `?after=0`: `lost` counts public events a
spectator never received.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any, cast

import httpx

from tests.bench.games import Game, Table
from tests.bench.loadgen import SSE_EVENT, percentiles, rss_kib, wait_until


class Watcher(asyncio.Protocol):
    """One spectator's SSE stream: the seq and arrival time of every event after its snapshot."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened = loop.create_future()
        self.closed = loop.create_future()
        self.received: list[tuple[int, float]] = []
        self.opened_after = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("the stream closed before its snapshot"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer + data
        last = 0
        for match in SSE_EVENT.finditer(buffer):
            seq = int(match.group(1))
            if match.group(2) == b"snapshot":
                self.opened_after = seq
                if not self.opened.done():
                    self.opened.set_result(None)
            else:
                self.received.append((seq, now))
            last = match.end()
        self.buffer = buffer[max(last, len(buffer) - 128) :]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Watched(Game):
    """The game rows' run, with `--spectators` watching the first room."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.watchers: list[Watcher] = []
        self.watched: Table | None = None
        self.kib_per_spectator = 0.0

    async def new_table(self, http: httpx.AsyncClient) -> Table:
        table = await super().new_table(http)
        if self.watched is None:
            self.watched = table
            await self.watch(http, table)
        return table

    async def spectator(self, http: httpx.AsyncClient, room_id: str) -> str:
        answer = await http.post(f"/v1/rooms/{room_id}/spectators", json={})
        if answer.status_code != 201:
            raise RuntimeError(f"watchRoom answered {answer.status_code}: {answer.text}")
        token: str = answer.json()["token"]
        return token

    async def open_watcher(self, room_id: str, token: str, after: int | None = None) -> Watcher:
        path = f"/v1/rooms/{room_id}/events" + (f"?after={after}" if after is not None else "")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        _, watcher = await asyncio.get_running_loop().create_connection(
            lambda: Watcher(request), self.host, self.port
        )
        if after is not None:
            watcher.opened.set_result(None)  # a replay has no snapshot
        return watcher

    async def watch(self, http: httpx.AsyncClient, table: Table) -> None:
        """Register the spectators and open their streams (64 at a time), measuring memory."""
        gc.collect()
        before = rss_kib(self.args.server_pids)
        gate = asyncio.Semaphore(64)

        async def one() -> Watcher:
            async with gate:
                token = await self.spectator(http, table.room_id)
                watcher = await self.open_watcher(table.room_id, token)
                await watcher.opened
                return watcher

        self.watchers = list(await asyncio.gather(*(one() for _ in range(self.args.spectators))))
        await asyncio.sleep(1.0)  # let the server settle what the openings allocated
        after = rss_kib(self.args.server_pids)
        self.kib_per_spectator = round((after - before) / max(1, len(self.watchers)), 1)

    async def run(self) -> dict[str, Any]:
        result = await super().run()
        table = self.watched
        assert table is not None
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:
            result |= await self.spectators_measured(http, table)
        for watcher in self.watchers:
            watcher.close()
        result["spectators"] = len(self.watchers)
        result["kib_per_spectator"] = self.kib_per_spectator
        # The server's CPU while the game was played, per event written to a stream (players'
        # deliveries included, a few hundred beside the spectators' hundreds of thousands).
        server_ms = result["cpu_ms_per_action"]["server"] * result["actions"]
        writes = result["spectator_deliveries"] + result["deliveries"]
        result["server_us_per_delivery"] = round(1000 * server_ms / max(1, writes), 2)
        return result

    async def spectators_measured(self, http: httpx.AsyncClient, table: Table) -> dict[str, Any]:
        """Delivery to the spectators, and what they missed against a spectator's replay."""
        cutoff = max((s.finished_seq or 0) for s in table.seats) or table.cutoff
        # The public log up to the cutoff, as a new spectator's replay from the start reads it.
        replay = await self.open_watcher(table.room_id, await self.spectator(http, table.room_id), after=0)
        await wait_until(
            lambda: bool(replay.received) and (replay.received[-1][0] >= cutoff or replay.closed.done()), 30
        )
        replay.close()
        public = {s for s, _ in replay.received if s <= cutoff}
        lost = deliveries = 0
        last: dict[int, float] = {}
        every: list[float] = []
        for watcher in self.watchers:
            seen = {}
            for seq, at in watcher.received:
                seen[seq] = at
                if seq in table.sent:
                    delay = at - table.sent[seq]
                    every.append(delay)
                    last[seq] = max(last.get(seq, 0.0), delay)
            deliveries += len(seen)
            lost += len({s for s in public if s > watcher.opened_after} - seen.keys())
        return {
            "spectator_delivery": percentiles(every),
            "last_spectator": percentiles(list(last.values())),
            "spectator_deliveries": deliveries,
            "public_events": len(public),
            "spectators_lost": lost,
        }


async def watched_game(args: argparse.Namespace) -> dict[str, Any]:
    """Run the spectator mode (loadgen `--game G --spectators N`)."""
    return await Watched(args).run()
