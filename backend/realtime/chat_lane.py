"""The chat command over HTTP, answered past the framework's per-request machinery.

`POST /v1/rooms/{room_id}/messages` is the busiest HTTP command. Declared as a FastAPI route
(backend/realtime/endpoints.py, and in the spec), about two thirds of the server's CPU per
chat went to the middleware stack, routing, dependency solving and the response's wrappers,
a third to the command itself. This ASGI middleware, outermost of the app's own, answers a
well-formed chat itself: the same generated request model, the same command (`chat`), the
same response model, and errors of the command rendered by the app's own exception handlers.

Anything else goes to the app untouched (its body replayed): no bearer token, a content type
other than JSON, a body over the limit or nested too deep, not JSON, or not what the model
accepts, a room id not in canonical form. So every refusal of a malformed request is the
app's own (its body limits, then the route), and the route stays what the spec describes and
what schemathesis checks.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.contract import api
from backend.core.browsers import API_HEADERS
from backend.core.limits import json_too_deep
from backend.realtime.endpoints import chat

HEX = "[0-9a-fA-F]"
PATH = re.compile(rf"/v1/rooms/({HEX}{{8}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{12}})/messages")
JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8"})


class ChatLane:
    """Answer well-formed chat commands directly; hand everything else to `app`."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        matched = PATH.fullmatch(scope["path"])
        if matched is None:
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        read = await _read_body(receive, self.max_bytes)
        if read is None:
            return  # the client went away before its request was whole: nobody to answer
        raw, more = read
        if more or len(raw) > self.max_bytes:  # over the limit: the app's body limit refuses it
            await self.app(scope, _replay(raw, more, receive), send)
            return
        body = _chat_request(raw, self.max_depth)
        if body is None:
            await self.app(scope, _replay(raw, False, receive), send)
            return
        app: Any = scope["app"]
        try:
            accepted = await chat(app.state.realtime, uuid.UUID(matched[1]), token, body)
        except Exception as exc:
            handler = _handler_for(app.exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            for name, value in API_HEADERS:
                response.headers.setdefault(name.decode(), value.decode())
            await response(scope, receive, send)
            return
        content = accepted.model_dump_json(by_alias=True).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    (b"content-type", b"application/json"),
                    *API_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _bearer_token(scope: Scope) -> str | None:
    """Return the bearer token of a JSON request, as FastAPI's HTTPBearer reads it; None for
    anything the lane leaves to the app (no token, another content type, no content type)."""
    authorization: bytes | None = None
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value
        elif name == b"content-type" and content_type is None:
            content_type = value
    if authorization is None or content_type is None or content_type.lower() not in JSON_TYPES:
        return None
    scheme, param = get_authorization_scheme_param(authorization.decode("latin-1"))
    return param if scheme.lower() == "bearer" and param else None


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool] | None:
    """Read the request body, stopping once it is over `limit` bytes; return what was read and
    whether more was left unread, or None when the client disconnected."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if not more or size > limit:
            return b"".join(chunks), more


def _replay(raw: bytes, more: bool, receive: Receive) -> Receive:
    """Return a `receive` that gives the body already read, then what the client sends next."""
    pending: list[Message] = [{"type": "http.request", "body": raw, "more_body": more}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


def _chat_request(raw: bytes, max_depth: int) -> api.ChatMessageRequest | None:
    """Return the body as the generated request model, or None when the app must refuse it."""
    if json_too_deep(raw, max_depth):  # before the parser, which would recurse as deep
        return None
    try:
        return api.ChatMessageRequest.model_validate(json.loads(raw))
    except (ValueError, ValidationError):  # not JSON (JSONDecodeError, not UTF-8), or not valid
        return None


def _handler_for(handlers: dict[Any, Any], exc: Exception) -> Any:
    """Return the app's exception handler for `exc`, looked up as Starlette does (by class)."""
    for kind in type(exc).__mro__:
        if kind in handlers:
            return handlers[kind]
    return None
