"""A connection's queue: visibility, de-duplication by seq, and slow consumers closed, not waited on."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest

from backend.domain.visibility import Viewer
from backend.persistence.events import StoredEvent
from backend.realtime.hub import REMOVED, SLOW, Closed, Connection, Hub, Outgoing, RoomChannel

ROOM = uuid.uuid4()


def event(
    seq: int, visibility: str = "room", audience: str | None = None, removes: str | None = None
) -> Outgoing:
    return Outgoing(seq, "chat.message", visibility, audience, f'{{"seq": {seq}}}', time.time(), removes)


def connection(player: str = "p1", team: str | None = None, size: int = 8) -> Connection:
    return Connection(ROOM, Viewer(player_id=player, team=team), "sse", size)


async def test_a_slow_consumer_is_closed_and_never_delays_the_others() -> None:
    slow, fast = connection("slow", size=4), connection("fast", size=1000)
    received: list[int] = []

    async def read_fast() -> None:
        while len(received) < 100:
            item = await fast.next()
            assert isinstance(item, Outgoing)
            received.append(item.seq)

    reader = asyncio.create_task(read_fast())
    for seq in range(1, 101):
        slow.offer(event(seq))  # never awaits: a full queue cannot block the hub
        fast.offer(event(seq))
        await asyncio.sleep(0)
    await asyncio.wait_for(reader, 1)
    assert received == list(range(1, 101))
    assert slow.close_reason == SLOW
    with pytest.raises(Closed) as closed:
        await slow.next()  # what was queued is dropped; the client resumes by seq
    assert closed.value.reason == SLOW
    assert slow.aborted.done()  # the writer is told to stop even if stuck in a send


async def test_events_are_filtered_by_visibility_and_sent_once() -> None:
    mafia = connection("m1", team="mafia")
    mafia.offer(event(1))
    mafia.offer(event(2, "team", "town"))
    mafia.offer(event(3, "team", "mafia"))
    mafia.offer(event(4, "player", "someone-else"))
    mafia.offer(event(5, "player", "m1"))
    mafia.last_sent = 3  # as if the replay had sent up to 3
    mafia.offer(event(3, "team", "mafia"))  # a late duplicate from the hub
    mafia.offer(event(6))
    seen = []
    while mafia.pending():
        item = await mafia.next()
        assert isinstance(item, Outgoing)
        seen.append(item.seq)
    assert seen == [5, 6]


async def test_the_removed_players_stream_ends_after_the_event_that_removes_them() -> None:
    conn = connection("p1")
    conn.offer(event(7, removes="p1"))
    item = await conn.next()
    assert isinstance(item, Outgoing)
    assert item.seq == 7
    with pytest.raises(Closed) as closed:
        await conn.next()
    assert closed.value.reason == REMOVED


async def test_a_burst_is_handed_out_as_one_batch_and_a_close_after_it() -> None:
    conn = connection("p1", size=100)
    for seq in (1, 2, 3):
        conn.offer(event(seq))
    conn.close(REMOVED)
    batch = await conn.next_batch()
    assert [item.seq for item in batch if isinstance(item, Outgoing)] == [1, 2, 3]
    with pytest.raises(Closed):
        await conn.next_batch()


async def test_a_close_is_not_lost_when_the_queue_is_full() -> None:
    conn = connection("p1", size=1)
    conn.offer(event(9, removes="p1"))  # fills the only slot, then closes the stream
    assert conn.close_reason == REMOVED
    batch = await conn.next_batch()
    assert [item.seq for item in batch if isinstance(item, Outgoing)] == [9]
    with pytest.raises(Closed) as closed:
        await asyncio.wait_for(conn.next_batch(), 1)
    assert closed.value.reason == REMOVED


def stored(seq: int) -> StoredEvent:
    data = {"player_id": str(uuid.uuid4()), "text": f"m{seq}", "channel": "room"}
    return StoredEvent(seq, "chat.message", data, "room", None, datetime.now(UTC))


async def test_a_handoff_delivers_only_the_next_events_in_order_and_leaves_gaps_to_the_log() -> None:
    """Events this process committed skip the read-back only when they are exactly the next ones."""
    hub = Hub(db=None, catchup_seconds=1.0, heartbeat_seconds=15.0)  # type: ignore[arg-type]
    conn = connection()
    hub.rooms[ROOM] = RoomChannel(ROOM, {conn}, last_read=5, wanted=5)
    hub.handoff(ROOM, [stored(7)])  # seq 6 is missing: the doorbell's read must find it
    assert conn.pending() == 0
    assert hub.rooms[ROOM].last_read == 5
    hub.handoff(ROOM, [stored(6), stored(7)])
    assert [item.seq for item in await conn.next_batch() if isinstance(item, Outgoing)] == [6, 7]
    assert hub.rooms[ROOM].last_read == 7
