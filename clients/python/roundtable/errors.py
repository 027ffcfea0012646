"""Errors of the SDK: every problem response becomes an exception carrying its stable `code`."""

from __future__ import annotations

from roundtable.contract import api


class RoundtableError(Exception):
    """The server refused a call: `status`, the problem's stable `code`, and its `detail`."""

    def __init__(self, status: int, code: str, detail: str, problem: api.Problem | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.problem = problem


class Unauthorized(RoundtableError):
    """401: no token, or one that is unknown or revoked."""


class Forbidden(RoundtableError):
    """403: not allowed (not the host, another room's token, ...)."""


class NotFound(RoundtableError):
    """404: no such room or player."""


class Conflict(RoundtableError):
    """409: not possible now (room full, phase closed, not your turn, ...)."""


class Invalid(RoundtableError):
    """422: the request is malformed or names an impossible target."""


class RateLimited(RoundtableError):
    """429: too many messages; retry later."""


class Unavailable(RoundtableError):
    """503: a dependency of the server is down; nothing was written."""


_BY_STATUS: dict[int, type[RoundtableError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: RateLimited,
    503: Unavailable,
}


def error_for(status: int, code: str, detail: str, problem: api.Problem | None = None) -> RoundtableError:
    """Return the exception for a problem response."""
    return _BY_STATUS.get(status, RoundtableError)(status, code, detail, problem)


def from_problem_body(status: int, body: object) -> RoundtableError:
    """Return the exception for a response body that should be a problem document."""
    if isinstance(body, api.Problem):
        return error_for(status, body.code, body.detail if isinstance(body.detail, str) else "", body)
    if isinstance(body, dict):
        try:
            problem = api.Problem.model_validate(body)
        except ValueError:
            problem = None
        if problem is not None:
            return from_problem_body(status, problem)
    return error_for(status, f"http_{status}", str(body)[:200])
