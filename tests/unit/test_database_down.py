"""Which errors mean "the database cannot serve now" (a 503 with Retry-After, retry later) and
which do not (the request's fault, or a bug): the one classification every path uses.

Errors are built as the driver raises them and wrapped by SQLAlchemy's own asyncpg dialect,
as they reach the handlers; tests/faults shows the same on a real restarting server."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg.exceptions import _base as asyncpg_base
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection, AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from backend.core.problems import DatabaseUnavailable, database_down

DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)  # type: ignore[no-untyped-call]


def as_sqlalchemy_raises(error: Exception) -> DBAPIError:
    """`error` as SQLAlchemy hands it on: translated by the dialect, wrapped in a DBAPIError."""
    try:
        try:
            AsyncAdapt_asyncpg_connection._handle_exception_no_connection(DBAPI, error)
        except Exception as translated:
            raise DBAPIError.instance("SELECT 1", None, translated, DBAPI.Error) from translated
    except DBAPIError as wrapped:
        return wrapped
    raise AssertionError("not raised")


DOWN = {
    "starting up": asyncpg.CannotConnectNowError("the database system is starting up"),
    "shutting down": asyncpg.CannotConnectNowError("the database system is shutting down"),
    "admin shutdown": asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    "too many connections": asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    "connection gone": asyncpg.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    ),
    "connection closed": asyncpg.InterfaceError("connection is closed"),
    "refused": ConnectionRefusedError(111, "Connect call failed"),
    "connect timeout": TimeoutError(),
}
NOT_DOWN = {
    "duplicate": asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
    "out of range for its type": asyncpg_base.DataError("invalid input for query argument $2: 2**63"),
    "bad SQL": asyncpg.UndefinedColumnError('column "x" does not exist'),
}


@pytest.mark.parametrize("error", DOWN.values(), ids=DOWN.keys())
def test_a_database_that_cannot_serve_now_is_down_however_it_is_wrapped(error: Exception) -> None:
    assert database_down(error)
    if isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError):
        assert database_down(as_sqlalchemy_raises(error))
    with pytest.raises(DatabaseUnavailable) as raised:
        raise DatabaseUnavailable() from error
    assert database_down(raised.value)


@pytest.mark.parametrize("error", NOT_DOWN.values(), ids=NOT_DOWN.keys())
def test_a_refused_statement_or_value_is_not_the_database_being_down(error: Exception) -> None:
    assert not database_down(error)
    assert not database_down(as_sqlalchemy_raises(error))


def test_no_pooled_connection_to_spare_is_down() -> None:
    assert database_down(PoolTimeoutError("QueuePool limit of size 20 overflow 0 reached"))
