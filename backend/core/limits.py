"""Limits on request bodies, enforced before the app parses them: size (413) and JSON
nesting depth (422)."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.contract.api import FieldError
from backend.core.problems import problem_response

# A JSON string (to its closing quote, or to the end of a text that never closes it: the
# pattern always matches at a quote, so a scan never backtracks), or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def json_too_deep(raw: bytes | str, limit: int) -> bool:
    """Return whether a JSON text nests arrays and objects more than `limit` levels deep.

    Brackets inside strings do not count. Cheap for the usual request: a text with at most
    `limit` opening brackets cannot be too deep, and is not scanned. A text that is not JSON
    at all (not even decodable) is left to the parser, which refuses it.
    """
    if isinstance(raw, str):
        text = raw
        if text.count("[") + text.count("{") <= limit:
            return False
    else:
        # In UTF-8, -16 and -32 alike every "[" or "{" holds its ASCII byte: never fewer.
        if raw.count(b"[") + raw.count(b"{") <= limit:
            return False
        try:
            text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        except UnicodeDecodeError:
            return False
    depth = 0
    for token in _TOKENS.finditer(text):
        first = token[0][0]
        if first in "[{":
            depth += 1
            if depth > limit:
                return True
        elif first in "]}":
            depth -= 1
    return False


def too_deep_detail(limit: int) -> str:
    """The message naming the nesting limit, for HTTP problems and WebSocket errors."""
    return f"JSON nested deeper than {limit} levels"


def _parsed_as_json(content_type: bytes | None) -> bool:
    """Whether FastAPI parses a body of this content type as JSON (it does without one)."""
    if content_type is None:
        return True
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


class BodyLimitMiddleware:
    """Read a request's body before the app does; refuse it with a 413 problem when it is over
    `max_bytes` (declared or sent, chunked or not), with a 422 problem when it is JSON nested
    deeper than `max_depth`; otherwise hand the app the body as read."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        content_type: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"content-type":
                content_type = value
            elif name == b"transfer-encoding":
                chunked = True
        if declared is None and not chunked:
            # No body: nothing to limit, and streams keep a send path without our wrapper.
            await self.app(scope, receive, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse_size(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its request was whole: nobody to answer
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse_size(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _parsed_as_json(content_type) and json_too_deep(body, self.max_depth):
            detail = too_deep_detail(self.max_depth)
            response = problem_response(
                422,
                "validation_failed",
                f"The request body is not valid: {detail}.",
                errors=[FieldError(loc=["body"], message=detail)],
            )
            await response(scope, receive, send)
            return
        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replayed() -> Message:
            if pending:
                return pending.pop()
            return await receive()

        await self.app(scope, replayed, send)

    async def _refuse_size(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "body_too_large", f"The request body exceeds {self.max_bytes} bytes."
        )
        await response(scope, receive, send)
