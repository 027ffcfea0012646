"""Every error as RFC 9457 application/problem+json with a stable `code`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.contract import api
from backend.contract.api import FieldError, Problem
from backend.domain.errors import RuleError
from backend.domain.nicknames import NicknameInvalid, NicknameInvalidCharacters, normalize_nickname

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """An error with its HTTP status and stable problem code."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"

    def __init__(self, detail: str = "A valid bearer token is required.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotAMember(Forbidden):
    code = "not_a_member"


class NotHost(Forbidden):
    code = "not_host"


class RoomCodeRequired(Forbidden):
    code = "room_code_required"


class SpectatorRefused(Forbidden):
    """A spectator's token reads; every command with it is refused."""

    code = "spectator"

    def __init__(self, detail: str = "Spectators watch; they cannot act.") -> None:
        super().__init__(detail)


class RoomNotFound(AppError):
    status = 404
    code = "room_not_found"


class PlayerNotFound(AppError):
    status = 404
    code = "player_not_found"


class RateLimited(AppError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: float, what: str = "Too many requests") -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(f"{what}; retry in {seconds} s.", headers={"Retry-After": str(seconds)})


class TooManyStreams(AppError):
    status = 429
    code = "too_many_streams"

    def __init__(self, cap: int, retry_after: int) -> None:
        super().__init__(
            f"This player has {cap} streams open already; close one first.",
            headers={"Retry-After": str(retry_after)},
        )


class ServerBusy(AppError):
    status = 503
    code = "server_busy"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "This server has as many streams open as it takes; try again later.",
            headers={"Retry-After": str(retry_after)},
        )


class DatabaseUnavailable(AppError):
    """The database cannot serve now (down, restarting, shutting down, out of connections):
    a 503 with `Retry-After` (a WebSocket command's `error`, a socket's 1013); nothing was
    written, the client sends it again."""

    status = 503
    code = "database_unavailable"

    def __init__(self, detail: str = "The database is unreachable; nothing was written.") -> None:
        super().__init__(detail)


# SQLSTATE classes and codes that say the server cannot serve now rather than that the
# statement is wrong: connection exceptions (08), operator intervention (57P01 admin shutdown,
# 57P02 crash shutdown, 57P03 cannot connect now: starting up or shutting down, ...) and
# insufficient resources (53: too many connections, out of memory, disk full).
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53")


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnavailable | PoolTimeoutError | OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(_UNAVAILABLE_SQLSTATES)
    # The driver's connection closed or out of step after the server dropped it, refused or
    # reset sockets, connect and command timeouts (TimeoutError is an OSError).
    return isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: SQLAlchemy's `orig`, `raise ... from`."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        orig = current.orig if isinstance(current, DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return chain


def database_down(exc: BaseException) -> bool:
    """Return whether `exc` means the database cannot serve now (retry later): the one
    classification every path uses (HTTP handlers, driver and ORM sessions, sockets, streams,
    background readers).

    Looks through what the error wraps, since SQLAlchemy wraps a driver error it has no class
    for (asyncpg's CannotConnectNowError, "the database system is starting up") in a plain
    DBAPIError, and a value the driver refused (out of range for its type: a ValueError, the
    request's fault) in an InterfaceError.
    """
    chain = _chain(exc)
    if any(isinstance(link, ValueError) for link in chain):
        return False
    return any(_unavailable(link) for link in chain)


def log_failure(logger: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """Log a step that failed and is retried (a background reader, timer or record): one
    warning line when the database cannot serve now, which a restart makes routine, and the
    traceback for anything else."""
    if database_down(exc):
        logger.warning(f"{message} (database unavailable: %s)", *args, type(exc).__name__)
    else:
        logger.warning(message, *args, exc_info=exc)


# Base classes of what a database fault raises: each goes through `database_down`, and is a
# 503 when it says so (else an unexpected error, a 500).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    PoolTimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


class ValidationFailed(AppError):
    status = 422
    code = "validation_failed"

    def __init__(self, detail: str, errors: list[FieldError]) -> None:
        super().__init__(detail)
        self.errors = errors


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Return a problem+json response."""
    problem = Problem(
        type="about:blank", title=HTTPStatus(status).phrase, status=status, detail=detail, code=code
    )
    if errors is not None:
        problem.errors = errors
    return JSONResponse(
        problem.model_dump(mode="json"), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def database_unavailable_response(request: Request, exc: BaseException) -> JSONResponse:
    """The 503 for a database that cannot serve now: one warning line, no traceback (the
    cause is known, and a restart would fill the log), and when to try again."""
    log.warning("database unavailable: %s", " <- ".join(type(link).__name__ for link in _chain(exc)))
    unavailable = exc if isinstance(exc, DatabaseUnavailable) else DatabaseUnavailable()
    seconds = request.app.state.settings.db_retry_after_seconds
    return problem_response(503, unavailable.code, unavailable.detail, headers={"Retry-After": str(seconds)})


# The values that tell apart the members of a body's union (a room's ruleset, an action's type).
BODY_TAGS = frozenset({*(r.value for r in api.Ruleset), *(t.value for t in api.ActionType)})


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    # A path parameter that a route and its dependencies (the caller's room) both take is
    # validated once by each: the client sent one bad value, so it is named once.
    errors: list[FieldError] = []
    seen: set[tuple[tuple[str | int, ...], str]] = set()
    for err in exc.errors():
        loc: list[str | int] = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            # A body told apart by a field (`ruleset`, an action's `type`): name that field.
            loc.append(str(err.get("ctx", {}).get("discriminator", "")).strip("'"))
        elif loc[:1] == ["body"] and len(loc) > 1 and loc[1] in BODY_TAGS:
            del loc[1]  # pydantic names the union's member; the client named no such field
        refused = _nickname_refusal(err)
        message = refused.detail if refused is not None else str(err.get("msg", "invalid"))
        if (tuple(loc), message) not in seen:
            seen.add((tuple(loc), message))
            errors.append(FieldError(loc=loc, message=message))
    return errors


def _nickname_refusal(err: Any) -> NicknameInvalid | None:
    """Return the nickname rule's own refusal of a nickname that failed its pattern: the pattern
    is that rule written out (some 800 ranges, no message to show anyone), and the rule names
    the character."""
    if err.get("type") != "string_pattern_mismatch" or tuple(err.get("loc", ()))[-1:] != ("nickname",):
        return None
    try:
        normalize_nickname(str(err.get("input", "")))
    except NicknameInvalid as refused:
        return refused
    return None


def _refused_nickname(exc: RequestValidationError) -> NicknameInvalidCharacters | None:
    """Return the refusal of the nickname's characters when they are all that is wrong with the
    request (`nickname_invalid_characters`, as the rule itself answers)."""
    errors = exc.errors()
    refused = _nickname_refusal(errors[0]) if len(errors) == 1 else None
    return refused if isinstance(refused, NicknameInvalidCharacters) else None


_STATUS_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def install_problem_handlers(app: FastAPI, allowed_methods: Callable[[str], list[str]]) -> None:
    """Map every exception the app can meet to a problem response."""

    async def on_app_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        if isinstance(exc, DatabaseUnavailable):
            return database_unavailable_response(request, exc)
        errors = exc.errors if isinstance(exc, ValidationFailed) else None
        return problem_response(exc.status, exc.code, exc.detail, errors=errors, headers=exc.headers)

    async def on_rule_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RuleError)
        return problem_response(exc.status, exc.code, exc.detail)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        refused = _refused_nickname(exc)
        if refused is not None:
            return problem_response(refused.status, refused.code, refused.detail)
        errors = _field_errors(exc)
        where = ", ".join(".".join(str(p) for p in e.loc) for e in errors)
        return problem_response(
            422, "validation_failed", f"The request is not valid: {where}.", errors=errors
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 400:
            # The framework's only 400 is a body it could not decode (say, not UTF-8): the same
            # kind of mistake as malformed JSON, which is a 422 naming the body.
            errors = [FieldError(loc=["body"], message=detail)]
            return problem_response(
                422, "validation_failed", "The request body is not valid JSON.", errors=errors
            )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route matching the path; the spec knows them all.
            headers["Allow"] = ", ".join(allowed_methods(request.url.path))
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return problem_response(exc.status_code, code, detail, headers=headers)

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        if not database_down(exc):
            return await on_unexpected(request, exc)
        return database_unavailable_response(request, exc)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal_error", "Something went wrong on our side.")

    handlers: list[tuple[type[Exception], Any]] = [
        (AppError, on_app_error),
        (RuleError, on_rule_error),
        (RequestValidationError, on_validation),
        (StarletteHTTPException, on_http),
        *((kind, on_database_error) for kind in DATABASE_ERRORS),
        (Exception, on_unexpected),
    ]
    for exc_type, handler in handlers:
        app.add_exception_handler(exc_type, handler)
