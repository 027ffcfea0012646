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
from typing import Any

from starlette.types import Receive
from starlette.websockets import WebSocket
from websockets.protocol import State
from websockets.server import ServerProtocol

from backend.realtime.hub import Batch, Sink


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
    transport, flow = cycle.transport, cycle.flow

    def write(batch: Batch) -> bool:
        # Only onto an empty buffer: what already waits there goes first, through the writer.
        if cycle.disconnected or flow.write_paused or transport.get_write_buffer_size():
            return False
        transport.write(batch.sse_chunks())
        return True

    return write


def ws_sink(websocket: WebSocket) -> Sink | None:
    """Return a sink for an accepted WebSocket under uvicorn's sans-I/O websockets protocol;
    None otherwise.

    Frames are encoded once per batch for every socket without a compression extension; a
    socket that negotiated one has its frames encoded by its own websockets protocol object.
    """
    protocol: Any = getattr(getattr(websocket, "_receive", None), "__self__", None)
    if (
        not isinstance(getattr(protocol, "conn", None), ServerProtocol)
        or not isinstance(getattr(protocol, "writable", None), asyncio.Event)
        or not hasattr(getattr(protocol, "transport", None), "get_write_buffer_size")
        or getattr(protocol, "close_sent", None) is not False
        or getattr(protocol, "disconnected", None) is not False
    ):
        return None
    conn: ServerProtocol = protocol.conn
    transport, writable = protocol.transport, protocol.writable

    def write(batch: Batch) -> bool:
        if (
            protocol.disconnected
            or protocol.close_sent
            or conn.state is not State.OPEN
            or not writable.is_set()
            or transport.get_write_buffer_size()
        ):
            return False
        if conn.extensions:
            for item in batch.items:
                conn.send_text(item.json.encode())
            transport.write(b"".join(conn.data_to_send()))
        else:
            transport.write(batch.ws_frames())
        return True

    return write
