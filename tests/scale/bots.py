"""The SDK's bots playing mafia games against a served Roundtable (over SSE, or each over one
WebSocket), and the checks the scale suite makes of what the games and servers left."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
from roundtable.bots import Bot, RandomStrategy
from roundtable.contract import api
from roundtable.errors import Conflict, RoundtableError, ServerUnreachable, Unavailable
from roundtable.session import Action, RoomSession, SocketSession

from tests.scale.pgbouncer import PREPARED


class SocketBot(Bot):
    """The SDK's bot, following its room and acting over one WebSocket instead of SSE and HTTP."""

    ws: SocketSession | None = None

    async def run(self, games: int = 1) -> api.Team:
        async with self.session.socket() as ws:
            self.ws = ws
            async for item in ws:
                await self.handle(item)
                self.ready.set()
                if len(self.played) >= games:
                    return self.played[-1][1]
        raise RuntimeError("the socket ended")  # pragma: no cover - it resumes by itself

    async def act(self, action: Action, attempts: int = 20) -> bool:
        assert self.ws is not None
        for attempt in range(attempts):
            try:
                await self.ws.act(action)
                return True
            except Conflict:
                return False  # the phase closed first
            except (ServerUnreachable, Unavailable):
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        return False

    async def on_phase(self, round_: int, phase: api.Phase) -> None:
        line = self.strategy.say(self.view)
        if line and self.ws is not None:
            with contextlib.suppress(RoundtableError):
                await self.ws.chat(line)


async def until_ready(bots: list[Bot], games: list[asyncio.Task[api.Team]]) -> None:
    """Wait until every bot's stream delivered its first item (raise if a bot failed first)."""
    waiters = [asyncio.ensure_future(bot.ready.wait()) for bot in bots]
    try:
        while not all(waiter.done() for waiter in waiters):
            pending = [w for w in waiters if not w.done()]
            await asyncio.wait([*pending, *games], return_when=asyncio.FIRST_COMPLETED)
            for game in games:
                if game.done():
                    game.result()
    finally:
        for waiter in waiters:
            waiter.cancel()


async def play(
    url: str, websocket: bool, seed: int, started: Callable[[uuid.UUID], None] | None = None
) -> tuple[uuid.UUID, api.Team]:
    """Create a 4-player mafia room of 1-second phases, fill it with bots (SSE or WebSocket),
    start when every bot listens, and play to the end; return the room and the winner."""
    settings = api.MafiaSettingsInput(max_players=4, night_seconds=1, day_seconds=1, vote_seconds=1)
    tag = f"{seed}-{uuid.uuid4().hex[:4]}"
    host = await RoomSession.create(url, name=f"Pooled {tag}", nickname=f"bot-{tag}-1", settings=settings)
    sessions = [host]
    try:
        for i in range(2, 5):
            sessions.append(await RoomSession.join(url, nickname=f"bot-{tag}-{i}", room_id=host.room_id))
        kind = SocketBot if websocket else Bot
        bots = [kind(s, RandomStrategy(seed * 10 + i)) for i, s in enumerate(sessions)]
        games = [asyncio.create_task(bot.run()) for bot in bots]
        try:
            await until_ready(bots, games)
            await host.start()
            if started is not None:
                started(host.room_id)
            winners = await asyncio.gather(*games)
        finally:
            for game in games:
                game.cancel()
            await asyncio.gather(*games, return_exceptions=True)
        assert len(set(winners)) == 1, winners
        return host.room_id, winners[0]
    finally:
        for s in sessions:
            await s.aclose()


async def play_all(
    url: str, transports: list[bool], started: Callable[[uuid.UUID], None] | None = None
) -> list[tuple[uuid.UUID, api.Team]]:
    """Play one game per transport (True: WebSocket) in parallel, in at most 60 s; `started` is
    told each room as its game starts."""
    async with asyncio.timeout(60):
        return await asyncio.gather(*(play(url, ws, seed, started) for seed, ws in enumerate(transports, 1)))


async def winners_logged(direct_url: str, rooms: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """Return each room's winners as its log records them (game.finished), read from PostgreSQL
    itself."""
    conn = await asyncpg.connect(direct_url)
    try:
        rows = await conn.fetch(
            "SELECT room_id, data->>'winner' FROM room_events WHERE room_id = ANY($1::uuid[])"
            " AND type = 'game.finished'",
            rooms,
        )
    finally:
        await conn.close()
    found: dict[uuid.UUID, list[str]] = {room: [] for room in rooms}
    for room, winner in rows:
        found[room].append(winner)
    return found


def assert_clean(*logs: Path) -> None:
    """No prepared-statement error, no traceback, no 500 in any of the logs."""
    for log in logs:
        found = log.read_text(errors="replace")
        assert not PREPARED.search(found), f"{log}:\n{found[-5000:]}"
        assert "Traceback" not in found, f"{log}:\n{found[-5000:]}"
        assert '" 500' not in found, f"{log}:\n{found[-5000:]}"


def check_games(direct_url: str, played: list[tuple[uuid.UUID, api.Team]]) -> None:
    """Every game the bots finished is finished, with that winner, in its room's log."""
    logged = asyncio.run(winners_logged(direct_url, [room for room, _ in played]))
    assert logged == {room: [winner.value] for room, winner in played}
