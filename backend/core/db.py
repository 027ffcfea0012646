"""The async engine and the one-transaction-per-command unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.config import Settings
from backend.core.database_url import to_async_url
from backend.core.problems import DatabaseUnavailable, database_down

# Through a pooler in transaction mode (DATABASE_POOLER=transaction, PgBouncer's
# pool_mode = transaction) each transaction, and each statement run outside one, may get
# another server connection. A named prepared statement lives on the server connection that
# prepared it, so none may be used: asyncpg's statement cache (names `__asyncpg_stmt_N__`,
# counted per client connection, so two clients collide on one server, and a name prepared on
# one server is missing on the next) and SQLAlchemy's cache of asyncpg prepared statements
# are off, and SQLAlchemy prepares every statement unnamed (`""`; with no name it would ask
# asyncpg for one, numbered). asyncpg then sends an unnamed statement's Parse again with its
# Bind, Execute and Sync, one batch the pooler hands to one server connection: a statement
# needs no transaction to keep its prepare and its execution together, and nothing outlives
# it on the server (unique names would, until the pooler closes that connection).
# `statement_cache_size` is an int here: in the URL it would reach asyncpg as a string.
POOLER_ASYNCPG_ARGS: dict[str, Any] = {"statement_cache_size": 0}


def unnamed_statement() -> str:
    """Name every statement SQLAlchemy prepares on asyncpg `""`: the unnamed statement."""
    return ""


def asyncpg_args(pooler: str) -> dict[str, Any]:
    """Return the extra arguments of a raw `asyncpg.connect()` for DATABASE_POOLER."""
    return dict(POOLER_ASYNCPG_ARGS) if pooler == "transaction" else {}


def engine_connect_args(pooler: str) -> dict[str, Any]:
    """Return the extra `connect_args` of a SQLAlchemy asyncpg engine for DATABASE_POOLER."""
    if pooler != "transaction":
        return {}
    return {
        **POOLER_ASYNCPG_ARGS,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": unnamed_statement,
    }


def create_engine(database_url: str, settings: Settings) -> AsyncEngine:
    """Create the pooled async engine for `database_url` (through a pooler if
    DATABASE_POOLER says so: see `engine_connect_args`)."""
    return create_async_engine(
        to_async_url(database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No ping before each checkout (a round trip per command): a connection that died
        # with its server fails one request with a 503 and the pool reconnects for the next.
        pool_pre_ping=False,
        # The most recently returned connection first: a quiet server keeps reusing one or two
        # warm connections (statements prepared, PostgreSQL backend's caches filled) instead of
        # rotating through every connection a burst opened (each one's first chat ~10 ms).
        pool_use_lifo=True,
        pool_timeout=10,
        connect_args={"timeout": 5, "command_timeout": 30, **engine_connect_args(settings.database_pooler)},
    )


@contextmanager
def unavailable_when_down() -> Iterator[None]:
    """Raise what the block raises, but as DatabaseUnavailable when it says the database
    cannot serve now (see `database_down`): every caller meets one error for it, whichever
    way the driver, the pool or SQLAlchemy put it."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if database_down(exc):
            raise DatabaseUnavailable() from exc
        raise


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for single-statement reads: no BEGIN/ROLLBACK round trips.

    Through a pooler in transaction mode each statement may run on another server connection:
    so does each here, and each is whole on one (prepared unnamed, its Parse sent again with
    its Bind, Execute and Sync: see `engine_connect_args`)."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


# Where a transaction collects the rooms it appended events to (room id -> newest seq):
# `Database.transaction` hands them to `on_commit` once, and only once, it has committed.
APPENDED = "roundtable.appended"


def appended(session: AsyncSession, room_id: Any, last_seq: int) -> None:
    """Note that the transaction appended events to a room, up to `last_seq`."""
    session.info.setdefault(APPENDED, {})[room_id] = last_seq


async def session_driver(session: AsyncSession) -> asyncpg.Connection:
    """Return the asyncpg connection under the session's transaction, the transaction begun.

    For a command's hot statements: plain prepared statements in the same transaction as the
    session's ORM ones (no statement compilation, no greenlet hop per statement). SQLAlchemy's
    asyncpg adapter begins its transaction lazily, at its first statement; a statement sent
    around it before that would run in autocommit, so it is begun here.
    """
    connection = await session.connection()
    adapter: Any = (await connection.get_raw_connection()).dbapi_connection
    if adapter._transaction is None:
        await adapter._start_transaction()
    driver: asyncpg.Connection = adapter._connection
    return driver


class Database:
    """Hands out short sessions; no session outlives one command or one read."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        # Rings the doorbell of a room whose events a transaction committed (set by realtime):
        # the one place commit-then-ring happens, so no command has to remember it.
        self.on_commit: Callable[[Any, int], None] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Run one transaction: commit when the block ends, roll back when it raises; then
        ring for every room it appended events to."""
        with unavailable_when_down():
            async with self._sessions() as session:
                async with session.begin():
                    yield session
                rooms = session.info.pop(APPENDED, None)
        if rooms and self.on_commit is not None:
            for room_id, last_seq in rooms.items():
                self.on_commit(room_id, last_seq)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """Run single-statement reads in autocommit: no BEGIN/COMMIT round trips."""
        with unavailable_when_down():
            async with (
                autocommit(self.engine) as conn,
                AsyncSession(bind=conn, expire_on_commit=False) as session,
            ):
                yield session

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """Read in one consistent snapshot, so state and its `last_seq` agree."""
        with unavailable_when_down():
            async with self._sessions() as session, session.begin():
                await session.connection(
                    execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
                )
                yield session

    @asynccontextmanager
    async def driver(self, transaction: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """Lend a pooled connection's asyncpg driver: one transaction, or (`transaction=False`)
        single-statement reads in autocommit. For the busiest paths (authentication, chat).

        Same pool, same transaction rules, but plain prepared statements: no ORM, no statement
        compilation, no greenlet hop per statement (about half of a chat message's CPU).
        A connection that fails is dropped from the pool, and the error reads as the database
        being unreachable. Through a pooler in transaction mode, a statement in autocommit is
        sent whole, Parse to Sync, to one server connection (asyncpg without its statement
        cache: see `POOLER_ASYNCPG_ARGS`).
        """
        with unavailable_when_down():  # no connection to be had: refused, starting up, pool timeout
            raw = await self.engine.raw_connection()
        conn: Any = raw.driver_connection
        try:
            if transaction:
                async with conn.transaction():
                    yield conn
            else:
                yield conn
        except BaseException as exc:
            down = isinstance(exc, Exception) and database_down(exc)
            if down or not isinstance(exc, Exception) or conn.is_closed() or conn.is_in_transaction():
                raw.invalidate()  # broken, cancelled, or left mid-transaction: do not lend it again
            if down and not isinstance(exc, DatabaseUnavailable):
                raise DatabaseUnavailable() from exc
            raise
        finally:
            raw.close()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
