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

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from backend.core.config import Settings
from backend.core.database_url import to_async_url
from backend.core.db import Database, autocommit, create_engine
from tests.scale.bots import assert_clean, check_games, play_all
from tests.scale.pgbouncer import PREPARED, PgBouncer, assert_bouncer_clean
from tests.support import NO_RATE_LIMITS, serve, wait_for

POOLER = {**NO_RATE_LIMITS, "DATABASE_POOLER": "transaction"}


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
    # (PgBouncer may replace a server connection it closed, say one a client left mid-transaction:
    # the opened count may pass the pool size, but it stays far below the logins it served.)
    assert 0 < servers < clients, (servers, clients)
    assert bouncer.pool_size < clients, (servers, clients)
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
