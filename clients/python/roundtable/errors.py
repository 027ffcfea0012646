"""Errors of the SDK: one family, by the problem's stable `code`, whichever way the command went.

A refused command raises the same class over HTTP (a problem response) and over the
WebSocket (an `error` reply, which carries the code but no status): a late vote is a
`PhaseClosed`, a `Conflict`, with status 409, either way. Catch a status class (`Conflict`)
or a code class (`PhaseClosed`); a code this SDK does not know yet gets its status class.
A server that cannot be reached raises `ServerUnreachable`, naming the URL.
"""

from __future__ import annotations

import socket

from roundtable.contract import api


class RoundtableError(Exception):
    """The server refused a call, or could not be reached: `status`, the stable `code`, and `detail`."""

    status: int = 0
    code: str = ""

    def __init__(self, status: int, code: str, detail: str, problem: api.Problem | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.problem = problem


class ServerUnreachable(RoundtableError):
    """No answer from the server at `url` (refused, unknown host, timed out, cut off); nothing was done."""

    code = "server_unreachable"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, self.code, f"cannot reach the Roundtable server at {url}: {reason}")
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return self.detail


def _links(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: `cause` attributes, `raise ... from`, and exceptions in args."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        wrapped = getattr(current, "cause", None) or current.__cause__ or current.__context__
        if wrapped is None and current.args and isinstance(current.args[0], BaseException):
            wrapped = current.args[0]
        current = wrapped if isinstance(wrapped, BaseException) else None
    return chain


def unreachable_reason(exc: BaseException) -> str:
    """Say in a few words why a connection failed, from the innermost failure `exc` wraps."""
    chain = _links(exc)
    for link in chain:
        if isinstance(link, socket.gaierror):
            return "unknown host"
    for link in chain:
        if isinstance(link, ConnectionRefusedError):
            return "connection refused (is it running?)"
        if isinstance(link, TimeoutError) or "Timeout" in type(link).__name__:
            return "no answer in time"
        if isinstance(link, ConnectionResetError):
            return "connection reset"
    inner = chain[-1]
    return str(inner) or type(inner).__name__


# Status classes ---------------------------------------------------------------------------


class Unauthorized(RoundtableError):
    """401: no token, or one that is unknown or revoked."""

    status = 401
    code = "unauthorized"


class Forbidden(RoundtableError):
    """403: not allowed (not the host, another room's token, ...)."""

    status = 403
    code = "forbidden"


class NotFound(RoundtableError):
    """404: no such room or player."""

    status = 404
    code = "not_found"


class Conflict(RoundtableError):
    """409: not possible now (room full, phase closed, not your turn, ...)."""

    status = 409


class Invalid(RoundtableError):
    """422: the request is malformed or names an impossible target."""

    status = 422
    code = "validation_failed"


class RateLimited(RoundtableError):
    """429: too many messages; retry later."""

    status = 429
    code = "rate_limited"


class Unavailable(RoundtableError):
    """503: a dependency of the server is down; nothing was written."""

    status = 503


# Code classes: the refusals a program reacts to one by one -----------------------------------


class NotHost(Forbidden):
    """Only the host may do that (start, advance, settings)."""

    code = "not_host"


class NotAMember(Forbidden):
    """The token is of another room."""

    code = "not_a_member"


class NotAPlayer(Forbidden):
    """The caller is not a player of the game (joined after it started)."""

    code = "not_a_player"


class Spectating(Forbidden):
    """The token is a spectator's (`RoomSession.spectate`): it reads the room, it never acts."""

    code = "spectator"


class RoomNotFound(NotFound):
    """No such room."""

    code = "room_not_found"


class PlayerNotFound(NotFound):
    """No such player in the room."""

    code = "player_not_found"


class RoomFull(Conflict):
    """The room has as many players as it takes."""

    code = "room_full"


class RoomNotInLobby(Conflict):
    """The game started: the room takes no new player or setting."""

    code = "room_not_in_lobby"


class RoomClosed(Conflict):
    """The room closed (idle, abandoned, emptied) and takes no command."""

    code = "room_closed"


class NicknameTaken(Conflict):
    """Someone in the room has that nickname, or one that looks the same."""

    code = "nickname_taken"


class GameNotInProgress(Conflict):
    """No game runs in the room (not started yet, or over)."""

    code = "game_not_in_progress"


class PhaseClosed(Conflict):
    """The phase the command was meant for closed before it arrived."""

    code = "phase_closed"


class CannotAct(Conflict):
    """This player has nothing to do in this phase (not their turn, role or lead)."""

    code = "cannot_act"


class InvalidTarget(Conflict):
    """The action names a player or choice it may not, as the game stands now."""

    code = "invalid_target"


class GameNotFinished(Conflict):
    """A rematch while the room's game still runs (or before the first one)."""

    code = "game_not_finished"


class GameNotFound(NotFound):
    """No such game in the room (`rounds(game=N)` of a game not played)."""

    code = "game_not_found"


class DatabaseUnavailable(Unavailable):
    """The server's database cannot serve now; nothing was written, send it again."""

    code = "database_unavailable"


# Every code the server uses, with its status (the drift test holds this to the server's own).
_STATUS_OF_CODE: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_a_member": 403,
    "not_host": 403,
    "room_code_required": 403,
    "spectator": 403,
    "not_a_player": 403,
    "not_found": 404,
    "room_not_found": 404,
    "player_not_found": 404,
    "game_not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "rule_error": 409,
    "lobby_error": 409,
    "room_full": 409,
    "room_not_in_lobby": 409,
    "max_players_below_player_count": 409,
    "chat_closed": 409,
    "room_closed": 409,
    "nickname_taken": 409,
    "nickname_confusable": 409,
    "game_not_in_progress": 409,
    "game_not_finished": 409,
    "phase_closed": 409,
    "not_enough_players": 409,
    "invalid_roles": 409,
    "player_dead": 409,
    "cannot_act": 409,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "validation_failed": 422,
    "invalid_target": 409,
    "invalid_choice": 409,
    "nickname_invalid": 422,
    "nickname_invalid_characters": 422,
    "idempotency_key_reused": 409,
    "rate_limited": 429,
    "too_many_streams": 429,
    "database_unavailable": 503,
    "internal_error": 500,
    "server_busy": 503,
    "dependency_unavailable": 503,
}

_BY_STATUS: dict[int, type[RoundtableError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: RateLimited,
    503: Unavailable,
}

_BY_CODE: dict[str, type[RoundtableError]] = {
    cls.code: cls
    for cls in (
        NotHost,
        NotAMember,
        NotAPlayer,
        Spectating,
        RoomNotFound,
        PlayerNotFound,
        RoomFull,
        RoomNotInLobby,
        RoomClosed,
        NicknameTaken,
        GameNotInProgress,
        GameNotFinished,
        GameNotFound,
        PhaseClosed,
        CannotAct,
        InvalidTarget,
        DatabaseUnavailable,
    )
}


def status_of(code: str) -> int | None:
    """Return the HTTP status the server answers `code` with, if this SDK knows the code."""
    return _STATUS_OF_CODE.get(code)


def error_class(status: int, code: str) -> type[RoundtableError]:
    """Return the class of a refusal: the code's own, else the status class, else RoundtableError."""
    by_code = _BY_CODE.get(code)
    if by_code is not None and by_code.status == status:
        return by_code
    return _BY_STATUS.get(status, RoundtableError)


def error_for(status: int, code: str, detail: str, problem: api.Problem | None = None) -> RoundtableError:
    """Return the exception for a problem response."""
    return error_class(status, code)(status, code, detail, problem)


def from_socket_error(code: str, detail: str) -> RoundtableError:
    """Return the exception for a WebSocket `error` reply: the same as its HTTP problem would raise."""
    return error_for(status_of(code) or 0, code, detail)


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
