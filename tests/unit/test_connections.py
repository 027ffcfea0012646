"""A connection's queue: visibility, de-duplication by seq, and slow consumers closed, not waited on."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from websockets.protocol import State
from websockets.server import ServerProtocol

from backend.contract.events import SocketAck
from backend.games.projection import Viewer
from backend.persistence.events import StoredEvent
from backend.realtime.hub import REMOVED, SLOW, Batch, Closed, Connection, Hub, Outgoing, RoomChannel
from backend.realtime.metrics import DELIVERY_LATENCY

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


def dealt(seq: int, player: str, team: str) -> Outgoing:
    return Outgoing(seq, "role.assigned", "player", player, f'{{"seq": {seq}}}', time.time(), dealt_team=team)


@pytest.mark.parametrize(("was", "now"), [("town", "mafia"), ("mafia", "town")])
async def test_a_rematchs_deal_still_queued_decides_the_team_events_behind_it(was: str, now: str) -> None:
    """A rematch deals a player another team: the events queued behind their new role.assigned
    follow the new team, not the one of the earlier game (none lost, none leaked)."""
    conn = connection("p1", team=was)
    conn.offer(event(1, "team", was))  # the earlier game's
    conn.offer(dealt(2, "p1", now))
    conn.offer(event(3, "team", now))
    conn.offer(event(4, "team", was))
    conn.offer(event(5))
    seen = []
    while conn.pending():
        item = await conn.next()
        assert isinstance(item, Outgoing)
        seen.append(item.seq)
    assert seen == [1, 2, 3, 5]
    assert conn.viewer.team == now
    conn.offer(event(6, "team", was))  # settled: filtered as it is offered
    assert conn.pending() == 0


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


class Sink:
    """Stands in for a socket the fan-out writes to: records each write (the request ids of
    its replies, then the seqs of its events), or refuses (busy)."""

    def __init__(self) -> None:
        self.writes: list[list[int | str]] = []
        self.texts: list[str] = []
        self.busy = False

    def events(self, batch: Batch, replies: Sequence[str] = ()) -> bool:
        if self.busy:
            return False
        self.writes.append(
            [*(json.loads(reply)["request_id"] for reply in replies), *(i.seq for i in batch.items)]
        )
        return True

    def text(self, message: str) -> bool:
        if self.busy:
            return False
        self.texts.append(message)
        return True


async def waiting_writer(conn: Connection) -> asyncio.Task[list[Outgoing | object]]:
    """Start the connection's writer and let it wait for live events."""
    writer = asyncio.create_task(conn.next_batch())
    await asyncio.sleep(0)
    return writer


async def test_a_waiting_stream_is_written_by_the_fan_out_one_write_per_batch() -> None:
    conn, sink = connection("m1"), Sink()
    conn.sink = sink
    writer = await waiting_writer(conn)
    dealt = Outgoing(2, "role.assigned", "player", "m1", "{}", time.time(), dealt_team="mafia")
    conn.offer_batch(
        Batch([event(1), dealt, event(3, "team", "mafia"), event(4, "team", "town"), event(5, "player", "x")])
    )
    # The deal earlier in the same batch lets the mafia event through; nothing else is theirs.
    assert sink.writes == [[1, 2, 3]]
    assert (conn.last_sent, conn.viewer.team) == (3, "mafia")
    conn.offer_batch(Batch([event(3, "team", "mafia")]))  # a late duplicate
    assert sink.writes == [[1, 2, 3]]
    assert not writer.done()  # the writer was never woken
    writer.cancel()


async def test_a_busy_socket_leaves_the_batch_to_the_writer_in_order() -> None:
    conn, sink = connection("p1", size=100), Sink()
    conn.sink = sink
    writer = await waiting_writer(conn)
    conn.offer_batch(Batch([event(1)]))
    sink.busy = True  # what was written has not left the buffer yet
    conn.offer_batch(Batch([event(2), event(3)]))
    sink.busy = False
    conn.offer_batch(Batch([event(4)]))  # queued behind 2 and 3, not written past them
    assert sink.writes == [[1]]
    batch = await asyncio.wait_for(writer, 1)
    assert [item.seq for item in batch if isinstance(item, Outgoing)] == [2, 3, 4]


async def test_a_direct_write_ends_the_removed_players_stream_after_its_event() -> None:
    conn, sink = connection("p1"), Sink()
    conn.sink = sink
    writer = await waiting_writer(conn)
    conn.offer_batch(Batch([event(1), event(2, removes="p1"), event(3)]))
    assert sink.writes == [[1, 2]]
    with pytest.raises(Closed) as closed:
        await asyncio.wait_for(writer, 1)
    assert closed.value.reason == REMOVED


def test_shared_websocket_frames_are_the_ones_the_protocol_would_send() -> None:
    items = [event(1), Outgoing(2, "chat.message", "room", None, '{"text":"' + "é" * 200 + '"}', 0.0)]
    protocol = ServerProtocol(state=State.OPEN)
    for item in items:
        protocol.send_text(item.json.encode())
    assert Batch(items).ws_frames() == b"".join(protocol.data_to_send())


def test_shared_sse_chunks_are_http_chunks_of_the_frames() -> None:
    items = [event(1), event(2)]
    body, chunks = b"", Batch(items).sse_chunks()
    while chunks:
        size, _, rest = chunks.partition(b"\r\n")
        body, chunks = body + rest[: int(size, 16)], rest[int(size, 16) :]
        assert chunks.startswith(b"\r\n")
        chunks = chunks[2:]
    assert body == b"".join(item.sse_frame() for item in items)


async def test_a_reply_is_written_at_once_to_a_waiting_socket_else_queued() -> None:
    conn, sink = connection("p1"), Sink()
    conn.sink = sink
    writer = await waiting_writer(conn)
    conn.send_control(SocketAck(type="ack", request_id="r1", seq=3))
    assert [json.loads(text) for text in sink.texts] == [{"type": "ack", "request_id": "r1", "seq": 3}]
    sink.busy = True
    conn.send_control(SocketAck(type="ack", request_id="r2"))
    assert len(sink.texts) == 1
    batch = await asyncio.wait_for(writer, 1)
    assert [item.request_id for item in batch if isinstance(item, SocketAck)] == ["r2"]


async def test_an_ack_joins_the_events_due_on_the_same_turn_in_one_write() -> None:
    """The player's own command committed an event: its ack waits for the room's flush on
    this turn of the loop and goes out ahead of the event, in one socket write."""
    hub = Hub(db=None, catchup_seconds=1.0, heartbeat_seconds=15.0)  # type: ignore[arg-type]
    conn, other, sink, other_sink = connection("p1"), connection("p2"), Sink(), Sink()
    conn.sink, other.sink = sink, other_sink
    writers = [await waiting_writer(conn), await waiting_writer(other)]
    channel = hub.rooms[ROOM] = RoomChannel(ROOM, {conn, other}, last_read=0, wanted=0)
    conn.channel = other.channel = channel
    hub.handoff(ROOM, [stored(1)])
    conn.send_control(SocketAck(type="ack", request_id="r1", seq=1))
    assert sink.writes == []  # held for the flush
    assert sink.texts == []
    await asyncio.sleep(0)
    assert sink.writes == [["r1", 1]]
    assert other_sink.writes == [[1]]
    assert sink.texts == []
    conn.send_control(SocketAck(type="ack", request_id="r2"))  # nothing due: written at once
    assert [json.loads(text)["request_id"] for text in sink.texts] == ["r2"]
    for writer in writers:
        writer.cancel()


async def test_a_held_ack_still_goes_ahead_of_its_events_when_the_socket_turns_busy() -> None:
    hub = Hub(db=None, catchup_seconds=1.0, heartbeat_seconds=15.0)  # type: ignore[arg-type]
    conn, sink = connection("p1"), Sink()
    conn.sink = sink
    writer = await waiting_writer(conn)
    conn.channel = hub.rooms[ROOM] = RoomChannel(ROOM, {conn}, last_read=0, wanted=0)
    hub.handoff(ROOM, [stored(1)])
    conn.send_control(SocketAck(type="ack", request_id="r1", seq=1))
    sink.busy = True
    await asyncio.sleep(0)
    batch = await asyncio.wait_for(writer, 1)
    assert isinstance(batch[0], SocketAck)
    assert batch[0].request_id == "r1"
    assert [item.seq for item in batch[1:] if isinstance(item, Outgoing)] == [1]
    assert sink.writes == []


class BrokenSink(Sink):
    """A socket whose write fails outright."""

    def events(self, batch: Batch, replies: Sequence[str] = ()) -> bool:
        raise RuntimeError("the handle is closed")


async def test_a_stream_whose_write_fails_ends_and_the_others_still_get_the_batch() -> None:
    hub = Hub(db=None, catchup_seconds=1.0, heartbeat_seconds=15.0)  # type: ignore[arg-type]
    broken, fine = connection("p1"), connection("p2")
    recorded = Sink()
    broken.sink, fine.sink = BrokenSink(), recorded
    writers = [await waiting_writer(broken), await waiting_writer(fine)]
    hub.rooms[ROOM] = RoomChannel(ROOM, {broken, fine}, last_read=0, wanted=0)
    hub.handoff(ROOM, [stored(1)])
    await asyncio.sleep(0)  # the flush runs on the loop's next turn
    assert recorded.writes == [[1]]
    assert broken.aborted.done()
    with pytest.raises(Closed):
        await asyncio.wait_for(writers[0], 1)
    writers[1].cancel()


async def test_every_delivery_is_timed_once_per_event_and_connection() -> None:
    """The latency histogram counts each event at each connection it reached, whether the
    connection was written the whole batch (timed together) or part of it (timed alone)."""
    hub = Hub(db=None, catchup_seconds=1.0, heartbeat_seconds=15.0)  # type: ignore[arg-type]
    mafioso, citizen, other = connection("m1", team="mafia"), connection("c1", team="town"), connection("c2")
    sinks = [Sink(), Sink(), Sink()]
    for conn, sink in zip((mafioso, citizen, other), sinks, strict=True):
        conn.sink = sink
    writers = [await waiting_writer(conn) for conn in (mafioso, citizen, other)]
    hub.rooms[ROOM] = RoomChannel(ROOM, {mafioso, citizen, other}, last_read=0, wanted=0)
    before = sum(DELIVERY_LATENCY.counts)
    whisper = stored(2)
    hub.handoff(ROOM, [stored(1), StoredEvent(2, "chat.message", whisper.data, "team", "mafia", whisper.at)])
    await asyncio.sleep(0)
    assert [sink.writes for sink in sinks] == [[[1, 2]], [[1]], [[1]]]
    assert sum(DELIVERY_LATENCY.counts) - before == 4
    for writer in writers:
        writer.cancel()


class KeepingSink(Sink):
    """A Sink that also keeps each batch it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[Batch] = []

    def events(self, batch: Batch, replies: Sequence[str] = ()) -> bool:
        self.batches.append(batch)
        return super().events(batch, replies)


async def test_a_rooms_spectators_share_one_filtered_and_encoded_batch_of_its_public_events() -> None:
    """Thousands of spectators see the same thing: the fan-out picks the room's events out of
    a batch once and every spectator is written that one batch (its bytes encoded once),
    never a team's, a player's or a sealed event."""
    hub = Hub(db=None, catchup_seconds=1.0, heartbeat_seconds=15.0)  # type: ignore[arg-type]
    spectators = [
        Connection(ROOM, Viewer(player_id=str(uuid.uuid4())), "sse", 8, spectator=True) for _ in range(50)
    ]
    sinks = [KeepingSink() for _ in spectators]
    for conn, sink in zip(spectators, sinks, strict=True):
        conn.sink = sink
    writers = [await waiting_writer(conn) for conn in spectators]
    hub.rooms[ROOM] = RoomChannel(ROOM, set(spectators), last_read=0, wanted=0)
    before = sum(DELIVERY_LATENCY.counts)
    base = stored(1)
    hub.handoff(
        ROOM,
        [
            base,
            StoredEvent(2, "chat.message", base.data, "team", "mafia", base.at),
            StoredEvent(3, "chat.message", base.data, "player", spectators[0].viewer.player_id, base.at),
            StoredEvent(4, "chat.message", base.data, "sealed", "1:vote:1", base.at),
            StoredEvent(5, "chat.message", base.data, "room", None, base.at),
        ],
    )
    await asyncio.sleep(0)
    assert all(sink.writes == [[1, 5]] for sink in sinks)
    shared = sinks[0].batches[0]
    assert all(sink.batches[0] is shared for sink in sinks)  # one batch, encoded once for all
    assert all(conn.last_sent == 5 for conn in spectators)
    assert sum(DELIVERY_LATENCY.counts) - before == 2 * len(spectators)
    for writer in writers:
        assert not writer.done()  # written by the fan-out, not woken
        writer.cancel()


async def test_a_spectators_queue_takes_no_team_event_waiting_for_a_deal() -> None:
    """A player without a team yet queues team events until their own deal settles them; a
    spectator is dealt nothing, so they never take room in its queue."""
    spectator = Connection(ROOM, Viewer(player_id="s1"), "sse", 8, spectator=True)
    player = connection("p1")
    for conn in (spectator, player):
        conn.offer(event(1, "team", "mafia"))
        conn.offer(event(2))
    assert player.pending() == 2
    assert spectator.pending() == 1
    assert [item.seq for item in await spectator.next_batch() if isinstance(item, Outgoing)] == [2]
