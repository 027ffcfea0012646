"""Through PgBouncer 1.18 in transaction mode (issue 18): DATABASE_POOLER=transaction.

A PgBouncer of the suite's own (tests/scale/pgbouncer.py) hands 5 server connections to
whoever runs a transaction; the app, served as a real process, holds up to 20 client
connections to it. Bot games (the SDK's bots, over SSE and over WebSocket) finish, a restart
against the same running PgBouncer migrates and serves, and no log shows a prepared-statement
error. The same server without the setting, through the same PgBouncer, fails as the issue
says; so do, in-process, autocommit reads with uniquely named statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from roundtable.bots import Bot, RandomStrategy
from roundtable.contract import api
from roundtable.errors import Conflict, RoundtableError, ServerUnreachable, Unavailable
from roundtable.session import Action, RoomSession, SocketSession
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from backend.core.config import Settings
from backend.core.database_url import to_async_url
from backend.core.db import Database, autocommit, create_engine
from tests.scale.pgbouncer import PgBouncer
from tests.support import NO_RATE_LIMITS, serve, wait_for

POOLER = {**NO_RATE_LIMITS, "DATABASE_POOLER": "transaction"}
PREPARED = re.compile(r"prepared statement|InvalidSQLStatementName|DuplicatePreparedStatement", re.I)


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


async def play(url: str, websocket: bool, seed: int) -> tuple[uuid.UUID, api.Team]:
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


async def play_all(url: str, transports: list[bool]) -> list[tuple[uuid.UUID, api.Team]]:
    """Play one game per transport (True: WebSocket) in parallel, in at most 60 s."""
    async with asyncio.timeout(60):
        return await asyncio.gather(*(play(url, ws, seed) for seed, ws in enumerate(transports, 1)))


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


def assert_bouncer_clean(bouncer: PgBouncer) -> None:
    found = bouncer.log_text()
    assert not PREPARED.search(found), found[-5000:]
    assert not re.search(r"\b(ERROR|WARNING|FATAL)\b", found), found[-5000:]


def check_games(direct_url: str, played: list[tuple[uuid.UUID, api.Team]]) -> None:
    """Every game the bots finished is finished, with that winner, in its room's log."""
    logged = asyncio.run(winners_logged(direct_url, [room for room, _ in played]))
    assert logged == {room: [winner.value] for room, winner in played}


def test_five_bot_games_in_parallel_finish_through_pgbouncer(
    bouncer: PgBouncer, pooled_url: str, direct_url: str, tmp_path: Path
) -> None:
    """Five 4-bot games at once (three over SSE, two over WebSocket) on a server whose pooled
    connections share PgBouncer's 5 server connections: every game finishes with the winner its
    log records, and neither the server's log nor PgBouncer's shows an error."""
    log = tmp_path / "server.log"
    with serve(pooled_url, log, POOLER) as server:
        played = asyncio.run(play_all(server.url, [False, True, False, True, False]))
    check_games(direct_url, played)
    # Shared for real: more clients logged in to PgBouncer than it opened server connections.
    database = direct_url.rsplit("/", 1)[1]
    clients = bouncer.log_text().count(f"login attempt: db={database} ")
    servers = len(re.findall(rf"S-\w+: {database}/\S+ new connection to server", bouncer.log_text()))
    assert 0 < servers <= bouncer.pool_size < clients, (servers, clients)
    assert_clean(log)
    assert_bouncer_clean(bouncer)


def test_a_restart_against_the_running_pgbouncer_migrates_and_serves(
    bouncer: PgBouncer, pooled_url: str, direct_url: str, tmp_path: Path
) -> None:
    """Stopped and started again while PgBouncer keeps its server connections (and whatever a
    process left on them), the server migrates through it, starts and plays (SSE and WebSocket)."""
    log = tmp_path / "server.log"
    played = []
    for _ in range(2):
        with serve(pooled_url, log, POOLER) as server:
            played += asyncio.run(play_all(server.url, [False, True]))
    check_games(direct_url, played)
    # Each start migrated through PgBouncer (nothing left to apply) before it served.
    assert log.read_text().count("alembic.runtime.migration Will assume transactional DDL") == 2
    assert log.read_text().count("Application startup complete") == 2
    assert_clean(log)
    assert_bouncer_clean(bouncer)


def test_without_the_setting_the_same_server_fails_through_pgbouncer(
    bouncer: PgBouncer, pooled_url: str, tmp_path: Path
) -> None:
    """The control: DATABASE_POOLER unset, through the same PgBouncer, the same games meet the
    issue's errors (`prepared statement "__asyncpg_stmt_…__" does not exist` / `already exists`):
    the tests above would see them."""
    log = tmp_path / "server.log"

    async def until_it_fails(url: str) -> None:
        games = asyncio.ensure_future(play_all(url, [False, True, False, True, False]))
        try:
            await wait_for(lambda: PREPARED.search(log.read_text(errors="replace")) or games.done(), 30, 0.1)
        finally:
            games.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await games

    try:
        with serve(pooled_url, log, NO_RATE_LIMITS) as server:
            asyncio.run(until_it_fails(server.url))
    except RuntimeError:
        pass  # it did not even start: its migrations met a statement a former process left
    assert PREPARED.search(log.read_text(errors="replace")), log.read_text()[-5000:]


def unique_names() -> str:
    return f"__asyncpg_{uuid.uuid4()}__"


@pytest.mark.parametrize(
    ("pooler", "connect_args", "fails"),
    [
        ("transaction", {}, False),
        ("none", {}, True),
        # SQLAlchemy's recipe for PgBouncer: caches off, uniquely named statements. A statement
        # run in autocommit is prepared, then (asyncpg closing an older one in between, which
        # ends the pooler's transaction) executed on another server connection.
        (
            "none",
            {
                "statement_cache_size": 0,
                "prepared_statement_cache_size": 0,
                "prepared_statement_name_func": unique_names,
            },
            True,
        ),
    ],
    ids=["pooler-mode", "defaults", "unique-names"],
)
def test_autocommit_reads_keep_prepare_and_execute_together(
    bouncer: PgBouncer, pooled_url: str, pooler: str, connect_args: dict[str, Any], fails: bool
) -> None:
    """Each way the app reads outside a transaction (`Database.read`, `autocommit`, the driver
    with `transaction=False`) and inside one (`Database.transaction`, `snapshot`, the driver),
    from 40 tasks at once on 20 pooled connections over PgBouncer's 5: in the pooler mode none
    fails; with asyncpg's defaults, or with unique names in autocommit, some do."""
    if connect_args:
        engine = create_async_engine(to_async_url(pooled_url), pool_size=20, connect_args=connect_args)
    else:
        engine = create_engine(pooled_url, Settings(database_pooler=pooler, db_pool_size=20))
    db = Database(engine)

    async def read_by_every_path(n: int) -> None:
        query = "SELECT $1::int + count(*) FROM pg_class WHERE relpages >= $2"
        async with db.read() as session:
            await (await session.connection()).execute(
                text("SELECT CAST(:n AS int) + count(*) FROM pg_class WHERE relpages >= :p"), {"n": n, "p": 0}
            )
        async with autocommit(db.engine) as conn:
            await conn.execute(text("SELECT CAST(:n AS int), now()"), {"n": n})
        async with db.driver(transaction=False) as raw:
            await raw.fetchval(query, n, 0)
            await raw.fetch("SELECT $1::text, $2::int", str(n), n)
        async with db.transaction() as session:
            await (await session.connection()).execute(text("SELECT CAST(:n AS int)"), {"n": n})
        async with db.snapshot() as session:
            await (await session.connection()).execute(text("SELECT CAST(:n AS int)"), {"n": n})
        async with db.driver() as raw:
            await raw.fetchval(query, n, 1)

    done: list[int] = []

    async def run() -> list[BaseException]:
        try:
            errors: list[BaseException] = []
            deadline = time.monotonic() + 3

            async def worker(w: int) -> None:
                n = 0
                while time.monotonic() < deadline and len(errors) < 20:
                    n += 1
                    try:
                        await read_by_every_path(w * 1000 + n)
                        done.append(n)
                    except Exception as exc:
                        errors.append(exc)

            await asyncio.gather(*(worker(w) for w in range(40)))
            return errors
        finally:
            await db.dispose()

    errors = asyncio.run(run())
    if fails:
        assert any(PREPARED.search(str(e)) for e in errors), errors
    else:
        assert errors == []
        assert len(done) > 200  # 40 tasks, 3 s: the server connections were contended throughout
