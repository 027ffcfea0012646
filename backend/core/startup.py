"""Before serving: reach the database, create it when missing and allowed, or say in a line what to do."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from backend.core.database_url import to_async_url, with_database
from backend.core.runtime import asyncpg_connect_args

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0


class StartupError(Exception):
    """The server cannot start; the message says why and what to do, in at most two lines."""


def where(args: dict[str, Any]) -> str:
    """Return `host:port` (or the socket directory) a connection goes to, for a message."""
    host = args.get("host") or "localhost"
    if str(host).startswith("/"):
        return f"the socket in {host}"
    return f"{host}:{args.get('port') or 5432}"


async def _connect(args: dict[str, Any]) -> None:
    conn = await asyncpg.connect(**args, timeout=CONNECT_TIMEOUT_SECONDS)
    await conn.close()


async def _create(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(
        **asyncpg_connect_args(with_database(server_url, "postgres")), timeout=CONNECT_TIMEOUT_SECONDS
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _unreachable(exc: BaseException, args: dict[str, Any]) -> StartupError | None:
    """Return the error to tell for a connection that never reached PostgreSQL, if it is one."""
    at = where(args)
    fix = "Start PostgreSQL there, fix DATABASE_URL, or unset it to use the embedded server."
    if isinstance(exc, socket.gaierror):
        return StartupError(
            f"Cannot find the database host {args.get('host')!r} of DATABASE_URL.\n"
            "Fix the host name in DATABASE_URL, or unset it to use the embedded server."
        )
    if isinstance(exc, ConnectionRefusedError):
        return StartupError(f"PostgreSQL at {at} refused the connection: is it running?\n{fix}")
    if isinstance(exc, TimeoutError):
        return StartupError(
            f"PostgreSQL at {at} did not answer within {CONNECT_TIMEOUT_SECONDS:.0f} s: is it running"
            f" and reachable?\n{fix}"
        )
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return StartupError(f"PostgreSQL at {at} is starting up or shutting down: start again in a moment.")
    if isinstance(exc, OSError):
        return StartupError(f"Cannot reach PostgreSQL at {at} ({exc.strerror or exc}).\n{fix}")
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        user = args.get("user") or "(default)"
        return StartupError(
            f"PostgreSQL at {at} refused user {user!r}: {exc}.\nFix the user or password in DATABASE_URL."
        )
    return None


def ensure_database(url: str, *, create: bool = True) -> None:
    """Connect to the database of `url`, creating it when missing (if `create` and allowed).

    Raise StartupError, saying what to do, when the server cannot be reached or the database
    is missing and cannot be created; anything else propagates with its traceback.
    """
    try:
        to_async_url(url)
        args = asyncpg_connect_args(url)
    except (ArgumentError, ValueError) as exc:
        raise StartupError(f"DATABASE_URL: {exc}; for example postgresql://user@host:5432/name.") from None
    try:
        asyncio.run(_connect(args))
        return
    except asyncpg.InvalidCatalogNameError:
        pass  # the server answered; the database is missing
    except Exception as exc:
        error = _unreachable(exc, args)
        if error is None:
            raise
        raise error from None
    name = make_url(url).database
    at = where(args)
    createdb = f"createdb -h {args.get('host') or 'localhost'} -p {args.get('port') or 5432}"
    if args.get("user"):
        createdb += f" -U {args['user']}"
    create_it = f"Create it ({createdb} {name}), or point DATABASE_URL at one that exists."
    if not create:
        raise StartupError(f'Database "{name}" does not exist on PostgreSQL at {at}.\n{create_it}')
    try:
        asyncio.run(_create(url, str(name)))
    except asyncpg.DuplicateDatabaseError:
        return  # another process created it meanwhile
    except asyncpg.InsufficientPrivilegeError:
        raise StartupError(
            f'Database "{name}" does not exist on PostgreSQL at {at}, and user {args.get("user")!r}'
            f" may not create it.\n{create_it}"
        ) from None
    except Exception as exc:
        error = _unreachable(exc, args)
        if error is None:
            raise
        raise error from None
    log.info('created database "%s" on PostgreSQL at %s', name, at)
