"""Every error as RFC 9457 application/problem+json with a stable `code`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.contract.api import FieldError, Problem
from backend.domain.errors import RuleError

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


class RoomNotFound(AppError):
    status = 404
    code = "room_not_found"


class PlayerNotFound(AppError):
    status = 404
    code = "player_not_found"


class RateLimited(AppError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(f"Too many messages; retry in {seconds} s.", headers={"Retry-After": str(seconds)})


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
    status = 503
    code = "database_unavailable"

    def __init__(self, detail: str = "The database is unreachable; nothing was written.") -> None:
        super().__init__(detail)


# Driver and pool errors that mean the database is unreachable or has no connection to spare
# right now: a 503 (a WebSocket's 1013), never a 500, and nothing was written.
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    ConnectionError,
    OSError,
)


def database_down(exc: BaseException) -> bool:
    """Return whether `exc` means the database cannot serve now (retry later)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (DatabaseUnavailable, *DATABASE_DOWN_ERRORS))


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


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors():
        loc: list[str | int] = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        errors.append(FieldError(loc=loc, message=str(err.get("msg", "invalid"))))
    return errors


_STATUS_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def install_problem_handlers(app: FastAPI, allowed_methods: Callable[[str], list[str]]) -> None:
    """Map every exception the app can meet to a problem response."""

    async def on_app_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        errors = exc.errors if isinstance(exc, ValidationFailed) else None
        return problem_response(exc.status, exc.code, exc.detail, errors=errors, headers=exc.headers)

    async def on_rule_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RuleError)
        return problem_response(exc.status, exc.code, exc.detail)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
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

    async def on_database_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem_response(
            503, "database_unavailable", "The database is unreachable; nothing was written."
        )

    async def on_dbapi(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DBAPIError)
        if exc.connection_invalidated:
            return await on_database_down(request, exc)
        return await on_unexpected(request, exc)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal_error", "Something went wrong on our side.")

    handlers: list[tuple[type[Exception], Any]] = [
        (AppError, on_app_error),
        (RuleError, on_rule_error),
        (RequestValidationError, on_validation),
        (StarletteHTTPException, on_http),
        *((kind, on_database_down) for kind in DATABASE_DOWN_ERRORS),
        (DBAPIError, on_dbapi),
        (Exception, on_unexpected),
    ]
    for exc_type, handler in handlers:
        app.add_exception_handler(exc_type, handler)
