"""A WebSocket's writer lets go of what it has sent: an open socket holds no snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from backend.realtime.endpoints import _write_messages
from backend.realtime.hub import Outgoing


class Sent(Outgoing):
    """A history item that can be watched for being freed (Outgoing itself has slots)."""


class Socket:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.sent = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.texts.append(text)
        self.sent.set()


class Stream:
    """History of one item, then live events that never come (an idle socket)."""

    def __init__(self, item: Outgoing) -> None:
        self._item: Outgoing | None = item
        self.actor = SimpleNamespace(room_id=uuid.uuid4())
        self.conn = SimpleNamespace(sink=None)

    async def history(self) -> AsyncIterator[Outgoing]:
        item, self._item = self._item, None
        assert item is not None
        yield item

    async def live(self) -> AsyncIterator[list[Any]]:
        await asyncio.get_running_loop().create_future()  # waits for ever
        yield []


async def test_an_idle_socket_keeps_nothing_of_its_history_alive() -> None:
    # The snapshot a socket opens with is the room's whole state (~20 KB with 20 players):
    # kept by the writer until the socket closes, 5,000 sockets would hold 100 MB of it.
    item = Sent(7, "snapshot", "room", None, '{"seq": 7}', time.time())
    freed = weakref.ref(item)
    socket = Socket()
    writer = asyncio.create_task(_write_messages(socket, Stream(item)))  # type: ignore[arg-type]
    del item
    await socket.sent.wait()
    await asyncio.sleep(0)  # the writer goes on to wait for live events
    gc.collect()
    assert socket.texts == ['{"seq": 7}']
    assert not writer.done()
    assert freed() is None
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
