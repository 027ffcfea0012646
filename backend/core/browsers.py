"""What browsers need from the server: CORS for pages on other origins, security headers.

- CORS (`CORS_ORIGINS`): Starlette's CORSMiddleware answers preflights and marks answers to
  the listed origins readable. The page's own origin needs nothing (a same-origin request is
  not CORS). No cookies are involved (the API takes bearer tokens), so no credentials mode.
- Every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (stream
  URLs may carry a ticket or a token) and frame protection.
- Pages (`/`, `/admin`, `/static/*`, `/docs*`, `/redoc`): a Content-Security-Policy. The game page
  loads only its own files; the documentation pages load their renderers from this server
  too (backend/docs/vendor) and may run their inline start-up script and styles and web
  workers from blobs (/docs/events also compiles schemas with `new Function`: 'unsafe-eval'
  there only). No other host, checked in Chromium (tests/e2e/test_docs_offline.py).
- Every `/v1/` and `/admin/api/` answer: `Cache-Control: no-store` (unless the route set its
  own): answers hold a player's token, role, votes or private chat (an operator's, every
  secret of a room), and must stay out of shared caches and the browser's disk cache.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What the API's requests carry and what a page must be able to read of its answers.
CORS_METHODS = ["GET", "POST", "PATCH", "DELETE"]
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"]
CORS_EXPOSED_HEADERS = ["Location", "Retry-After", "WWW-Authenticate", "Allow"]
CORS_MAX_AGE = 600

BASE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
API_HEADERS = [*BASE_HEADERS, (b"cache-control", b"no-store")]

_COMMON = "base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'self'"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    f"connect-src 'self'; {_COMMON}"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    f"font-src 'self' data:; img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; {_COMMON}"
)
# AsyncAPI's component validates the document with Ajv, which compiles schemas to functions.
EVENTS_DOCS_CSP = DOCS_CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-eval'", 1)
PAGE_HEADERS = [*BASE_HEADERS, (b"content-security-policy", PAGE_CSP.encode())]
DOCS_HEADERS = [*BASE_HEADERS, (b"content-security-policy", DOCS_CSP.encode())]
EVENTS_DOCS_HEADERS = [*BASE_HEADERS, (b"content-security-policy", EVENTS_DOCS_CSP.encode())]


def headers_for(path: str) -> list[tuple[bytes, bytes]]:
    """Return the headers every response to `path` carries (unless it set them itself)."""
    if path.startswith(("/v1/", "/admin/api/")):
        return API_HEADERS
    if path in ("/", "/admin") or path.startswith("/static/"):
        return PAGE_HEADERS
    if path == "/docs/events":
        return EVENTS_DOCS_HEADERS
    if path == "/redoc" or path == "/docs" or path.startswith("/docs/"):
        return DOCS_HEADERS
    return BASE_HEADERS


class SecurityHeaders:
    """Add `headers_for(path)` to every HTTP response, leaving any the app set alone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in extra if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def cors_options(origins: list[str]) -> dict[str, Any]:
    """Return CORSMiddleware's arguments for the allowlist `origins`."""
    return {
        "allow_origins": origins,
        "allow_methods": CORS_METHODS,
        "allow_headers": CORS_REQUEST_HEADERS,
        "expose_headers": CORS_EXPOSED_HEADERS,
        "allow_credentials": False,  # bearer tokens, no cookies
        "max_age": CORS_MAX_AGE,
    }
