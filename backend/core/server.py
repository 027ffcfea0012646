"""Below the ASGI app: uvicorn's protocols with a request read deadline and a graceful
shutdown, and the process's descriptor limit.

uvicorn has no timeout on reading a request: its keep-alive timer runs only between
requests and stops at the first byte, so a client trickling its headers (or sending
nothing) holds a socket, a descriptor, for ever. `HttpProtocol` closes a connection that
has not sent a whole request (headers and body) within `REQUEST_READ_TIMEOUT_SECONDS` of
opening, or of the first byte of its next request on a kept-alive connection.

On SIGTERM uvicorn calls `shutdown()` on every connection. Its WebSocket protocol then
closes an open socket at once with 1012, while a command read from it may still be
committing, so the client never learns it was. `WebSocketProtocol` leaves an open socket to
the app instead (it takes no new command, answers the one in flight and closes with 1001,
see backend/realtime/endpoints.py), and closes it with 1001 itself only if the app has not
when the drain is over. The first `shutdown()` call tells whoever registered with
`on_shutdown` (the realtime machinery ends SSE streams with their terminating chunk).

A long response (an SSE stream) may be detached from its request (`DetachableCycle`): the
app returns once the response has started, without finishing it, and keeps writing through
the cycle's own `send` (no middleware, no request task, none of the ~25 coroutine frames of
the request's stack held for the stream's life); `lost` tells it when the client goes away.

Both classes are named to uvicorn by import string (see backend/__main__.py), so workers
started by uvicorn's process manager import them rather than unpickle them.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar

from uvicorn._types import ASGI3Application
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from backend.core.config import get_settings

log = logging.getLogger(__name__)

HTTP_PROTOCOL = "backend.core.server:HttpProtocol"
WS_PROTOCOL = "backend.core.server:WebSocketProtocol"
WS_GOING_AWAY = 1001

# Descriptors a process keeps for everything but streams (database pool, Redis, listening
# socket, logs, requests in flight) when the stream cap is derived from the limit.
RESERVED_DESCRIPTORS = 256
# Used for the soft limit when the hard one is unlimited.
UNLIMITED_DESCRIPTORS = 1 << 20

_shutdown_callbacks: list[Callable[[], None]] = []
_shutting_down = False


def raise_descriptor_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_DESCRIPTORS if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("descriptor limit left at %d (hard limit %d)", soft, hard)
    return UNLIMITED_DESCRIPTORS if soft == resource.RLIM_INFINITY else soft


def stream_cap(configured: int, descriptors: int) -> int:
    """Return the per-process cap on open streams: the configured one, else what the
    descriptor limit leaves after a reserve for everything else."""
    if configured:
        return configured
    return max(16, descriptors - max(RESERVED_DESCRIPTORS, descriptors // 8))


def on_shutdown(callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` once when the server starts shutting down; return an unregister."""
    _shutdown_callbacks.append(callback)

    def unregister() -> None:
        if callback in _shutdown_callbacks:
            _shutdown_callbacks.remove(callback)

    return unregister


def _begin_shutdown() -> None:
    global _shutting_down
    if _shutting_down:
        return
    _shutting_down = True
    for callback in list(_shutdown_callbacks):
        try:
            callback()
        except Exception:
            log.exception("a shutdown callback failed")


@cache
def _read_timeout() -> float:
    return get_settings().request_read_timeout_seconds


@cache
def _drain_seconds() -> float:
    return float(get_settings().shutdown_drain_seconds)


class DetachableCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, whose response the app may finish after it returned.

    `detach(lost)` (called by the app after the response started): returning without having
    finished the response is then no error, the response is finished later through `send`
    (its completion still starts the connection's next request), and `lost` is called if the
    client goes away first. Detached cycles are listed in one dict rather than given new
    attributes: uvicorn's cycle keeps its attributes in a key-sharing dict, which an
    attribute added later would turn into a dict of its own, for every stream.
    """

    detached: ClassVar[dict[RequestResponseCycle, Callable[[], None]]] = {}

    def detach(self, lost: Callable[[], None]) -> None:
        """Let the app return before the response is finished; call `lost` if the client goes
        away first. Also drops what the request's scope holds but the response no longer needs
        (the app's per-request state, exit stacks, the route)."""
        DetachableCycle.detached[self] = lost
        # Once the app's stack has unwound (it may read the scope on its way out).
        asyncio.get_running_loop().call_soon(self._trim_scope)

    def _trim_scope(self) -> None:
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        kept = {key: scope[key] for key in SCOPE_KEPT if key in scope}
        scope.clear()  # in place: the protocol holds the same dict
        scope.update(kept)

    def forget(self) -> None:
        """The detached response is over (or about to be finished): nothing more to call."""
        DetachableCycle.detached.pop(self, None)

    async def run_asgi(self, app: ASGI3Application) -> None:
        # uvicorn's run_asgi, but a detached response is left open when the app returns.
        try:
            result = await app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            self.forget()
            if not self.response_started:
                await self.send_500_response()
            else:
                self.transport.close()
        else:
            detached = self in DetachableCycle.detached
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self.send_500_response()
            elif not self.response_complete and not self.disconnected and not detached:
                self.logger.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            if self not in DetachableCycle.detached or self.response_complete:
                self.on_response = lambda: None


# What a detached response's cycle (and uvicorn's protocol, which shares the scope) reads later.
SCOPE_KEPT = (
    "type",
    "method",
    "path",
    "http_version",
    "scheme",
    "client",
    "server",
    "root_path",
    "query_string",
)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection slow to send its request."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.read_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self.read_deadline is None:
            self.read_deadline = self.loop.call_later(_read_timeout(), self._read_timed_out)

    def _disarm(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def _read_timed_out(self) -> None:
        self.read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # Every cycle this protocol runs may be detached (uvicorn makes plain ones).
        cycle.__class__ = DetachableCycle
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        cycle = self.cycle
        super().connection_lost(exc)
        lost = DetachableCycle.detached.pop(cycle, None) if cycle is not None else None
        if lost is not None and not cycle.response_complete:
            lost()

    def on_message_begin(self) -> None:
        # The first byte of a request on a kept-alive connection (uvicorn's keep-alive timer
        # has just stopped): the whole request must follow in time.
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def shutdown(self) -> None:
        _begin_shutdown()
        super().shutdown()


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websockets protocol, leaving an open socket's close to the app on shutdown."""

    def shutdown(self) -> None:
        _begin_shutdown()
        if self.handshake_complete and not self.close_sent and not self.disconnected:
            self.loop.call_later(_drain_seconds(), self._going_away)
            return
        super().shutdown()

    def _going_away(self) -> None:
        # The drain is over and the app has not closed the socket: close it as uvicorn would,
        # with the code the AsyncAPI file lists for a server going away.
        if self.close_sent or self.disconnected:
            return
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": WS_GOING_AWAY})
        self.conn.send_close(WS_GOING_AWAY)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()
