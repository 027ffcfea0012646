"""Presence records a player's edges one at a time, in order (no database: a recording setter)."""

from __future__ import annotations

import asyncio
import uuid

from backend.realtime.presence import Presence

ROOM, PLAYER = uuid.uuid4(), uuid.uuid4()


async def test_a_reconnect_during_a_slow_disconnect_record_is_recorded_after_it() -> None:
    """The disconnect (after the grace period) is still being written when the player opens a
    stream again: the connect is written after it, never alongside, so it is the last word."""
    written: list[bool] = []
    in_flight = 0
    most_in_flight = 0
    release = asyncio.Event()

    async def set_connected(room_id: uuid.UUID, player_id: uuid.UUID, connected: bool) -> None:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        if not connected:
            await release.wait()  # a slow database
        written.append(connected)
        in_flight -= 1

    async def maintain() -> None:
        return None

    presence = Presence(set_connected, maintain, grace=0.01, every=60)
    await presence.opened(ROOM, PLAYER)
    presence.closed(ROOM, PLAYER)
    await asyncio.sleep(0.05)  # the grace period is over: the disconnect is being written
    reopening = asyncio.create_task(presence.opened(ROOM, PLAYER))
    await asyncio.sleep(0.05)
    assert written == [True]  # the reconnect waits for the disconnect in flight
    release.set()
    await asyncio.wait_for(reopening, 1)
    assert written == [True, False, True]
    assert most_in_flight == 1
    await presence.stop()
