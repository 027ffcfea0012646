"""Writing a room's events straight onto idle sockets, past the ASGI `send`.

ASGI hands a response one coroutine `send` per connection: every event to every stream
would wake that stream's writer task and run the send through the framework's wrappers,
which costs more than the socket write itself. For streams served by uvicorn (what `make
run` serves), the fan-out instead writes each batch onto the socket in its own loop while
the writer waits (see `Connection._write_directly`), as long as nothing is waiting in the
socket's buffer; anything else takes the writer's ASGI path.

This is the one module that knows uvicorn's protocol objects: reached through the bound
`receive` method ASGI passes, and checked attribute by attribute, so any other server (a
test transport, another ASGI server, a uvicorn that changed) gets no sink and loses only
speed. tests/integration/test_streams.py fails if uvicorn's objects stop matching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from starlette.types import Receive
from starlette.websockets import WebSocket
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from backend.realtime.hub import Batch, Sink


class SseSink:
    """Writes events as chunks of the started, chunked SSE response of an httptools protocol."""

    __slots__ = ("cycle", "flow", "transport")

    def __init__(self, cycle: Any) -> None:
        self.cycle, self.transport, self.flow = cycle, cycle.transport, cycle.flow

    def events(self, batch: Batch, replies: Sequence[str] = ()) -> bool:
        # An SSE stream carries events only: it is never given replies.
        # Only onto an empty buffer: what already waits there goes first, through the writer.
        transport = self.transport
        if (
            self.cycle.disconnected
            or self.flow.write_paused
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            return False
        transport.write(batch.sse_chunks())
        return True

    def text(self, message: str) -> bool:
        return False  # an SSE stream carries events only


def sse_sink(receive: Receive) -> Sink | None:
    """Return a sink for an SSE response under uvicorn's httptools protocol once it has started
    with chunked encoding; None otherwise."""
    cycle: Any = getattr(receive, "__self__", None)
    if (
        getattr(cycle, "chunked_encoding", None) is not True
        or getattr(cycle, "disconnected", None) is not False
        or not hasattr(getattr(cycle, "transport", None), "get_write_buffer_size")
        or not hasattr(getattr(cycle, "flow", None), "write_paused")
    ):
        return None
    return SseSink(cycle)


class WsSink:
    """Writes text frames onto an open socket of uvicorn's sans-I/O websockets protocol.

    Events are encoded once per batch for every socket without a compression extension; a
    socket that negotiated one has its frames encoded by its own websockets protocol object.
    """

    __slots__ = ("conn", "protocol", "transport", "writable")

    def __init__(self, protocol: Any) -> None:
        self.protocol, self.transport, self.writable = protocol, protocol.transport, protocol.writable
        self.conn: ServerProtocol = protocol.conn

    def _ready(self) -> bool:
        protocol = self.protocol
        return not (
            protocol.disconnected
            or protocol.close_sent
            or self.conn.state is not State.OPEN
            or not self.writable.is_set()
            or self.transport.is_closing()
            or self.transport.get_write_buffer_size()
        )

    def events(self, batch: Batch, replies: Sequence[str] = ()) -> bool:
        if not self._ready():
            return False
        if self.conn.extensions:
            for text in (*replies, *(item.json for item in batch.items)):
                self.conn.send_text(text.encode())
            self.transport.write(b"".join(self.conn.data_to_send()))
        elif replies:
            frames = [Frame(Opcode.TEXT, text.encode()).serialize(mask=False) for text in replies]
            self.transport.write(b"".join([*frames, batch.ws_frames()]))
        else:
            self.transport.write(batch.ws_frames())
        return True

    def text(self, message: str) -> bool:
        if not self._ready():
            return False
        self.conn.send_text(message.encode())
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True


def ws_sink(websocket: WebSocket) -> Sink | None:
    """Return a sink for an accepted WebSocket under uvicorn's sans-I/O websockets protocol;
    None otherwise."""
    protocol: Any = getattr(getattr(websocket, "_receive", None), "__self__", None)
    if (
        not isinstance(getattr(protocol, "conn", None), ServerProtocol)
        or not isinstance(getattr(protocol, "writable", None), asyncio.Event)
        or not hasattr(getattr(protocol, "transport", None), "get_write_buffer_size")
        or getattr(protocol, "close_sent", None) is not False
        or getattr(protocol, "disconnected", None) is not False
    ):
        return None
    return WsSink(protocol)
