"""Per-process fan-out: one database read per room per doorbell, then each connection's share.

A connection registers before it replays, so nothing committed after its replay can be
missed; it skips seqs it already sent, so nothing is sent twice. A lost doorbell is made
up for by the catch-up timer, which compares every watched room's last_seq with what the
hub has read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, TypeAdapter
from websockets.frames import Frame, Opcode

from backend.contract import events
from backend.core.db import Database
from backend.core.problems import log_failure
from backend.games.projection import Viewer, may_see
from backend.games.protocol import Visibility
from backend.persistence.events import StoredEvent, last_seqs, read_events_of_rooms
from backend.realtime import metrics

log = logging.getLogger(__name__)

# The generated AsyncAPI union: every event that leaves the server passes through it.
ROOM_EVENT: TypeAdapter[events.RoomEvent] = TypeAdapter(events.RoomEvent)


@dataclass(slots=True)
class Outgoing:
    """An event ready to send: its envelope serialised once for every connection that sees it."""

    seq: int
    type: str
    visibility: str
    audience: str | None
    json: str
    at: float  # commit time, seconds since the epoch
    # The player this event removes from the room, whose streams end after it.
    removes: str | None = None
    # For role.assigned: the team its player now plays for, which decides their team events.
    dealt_team: str | None = None
    _sse: bytes | None = None

    def sse_frame(self) -> bytes:
        """Return the SSE frame, encoded once however many streams send it."""
        if self._sse is None:
            self._sse = f"id: {self.seq}\nevent: {self.type}\ndata: {self.json}\n\n".encode()
        return self._sse


def prepare(room_id: uuid.UUID, event: StoredEvent) -> Outgoing:
    """Serialise a stored event through the generated AsyncAPI models."""
    envelope = ROOM_EVENT.validate_python(
        {"seq": event.seq, "room_id": room_id, "type": event.type, "at": event.at, "data": event.data}
    )
    removes = event.data.get("player_id") if event.type == "player.left" else None
    dealt_team = event.data.get("team") if event.type == "role.assigned" else None
    return Outgoing(
        seq=event.seq,
        type=event.type,
        visibility=event.visibility,
        audience=event.audience,
        json=envelope.model_dump_json(),
        at=event.at.timestamp(),
        removes=removes,
        dealt_team=dealt_team,
    )


class Closed(Exception):
    """The connection was closed by the server; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Tells an idle writer to send a keep-alive (an SSE comment).
HEARTBEAT = object()


@dataclass(slots=True)
class Batch:
    """Events of one room handed to its connections together, encoded once for all of them."""

    items: Sequence[Outgoing]
    _sse: bytes | None = None
    _ws: bytes | None = None
    # Connections written every event of the batch: their latency is observed once per event
    # for all of them, when the batch is done (see Hub._flush).
    whole: int = 0
    # The events every member of the room sees (see `public`), when not all of them.
    _public: Batch | None = None

    def public(self) -> Batch:
        """Return the batch's events whose audience is the whole room: what every spectator
        of the room is written, encoded once for all of them however many there are."""
        if self._public is None:
            items = [item for item in self.items if item.visibility == Visibility.room]
            self._public = self if len(items) == len(self.items) else Batch(items)
        return self._public

    def observe_whole(self) -> None:
        """Observe the delivery latency of every event for each connection written all of them."""
        if self._public is not None and self._public is not self:
            self._public.observe_whole()
        if self.whole:
            now = time.time()
            for item in self.items:
                metrics.DELIVERY_LATENCY.observe(max(0.0, now - item.at), self.whole)
            self.whole = 0

    def sse_chunks(self) -> bytes:
        """Return every event as an HTTP/1.1 chunk of SSE, joined: one socket write."""
        if self._sse is None:
            frames = [item.sse_frame() for item in self.items]
            self._sse = b"".join([b"%x\r\n%b\r\n" % (len(frame), frame) for frame in frames])
        return self._sse

    def ws_frames(self) -> bytes:
        """Return every event as an uncompressed WebSocket text frame from the server, joined."""
        if self._ws is None:
            self._ws = b"".join(
                [Frame(Opcode.TEXT, item.json.encode()).serialize(mask=False) for item in self.items]
            )
        return self._ws


class Sink(Protocol):
    """Writes straight onto an idle connection's socket (see backend/realtime/sinks.py). Each
    method returns False when it cannot now (the socket's buffer is not empty, the peer is
    gone), and the writer task sends the message instead."""

    def events(self, batch: Batch, replies: Sequence[str] = ()) -> bool:
        """Write the batch's events, after `replies` (WebSocket acks and errors) if any."""
        ...

    def text(self, message: str) -> bool:
        """Write a reply that is not an event (a WebSocket ack or error)."""
        ...


# Reasons a server closes a stream.
SLOW = "slow"
REMOVED = "removed"
LIFETIME = "lifetime"
SHUTDOWN = "shutdown"
BROKEN = "broken"

# Rooms read by one statement at most (see Hub._pump_soon).
READ_GROUP = 200


class Connection:
    """One open stream of one player: a bounded queue the hub fills and one writer drains.

    A plain deque and a single waiter future rather than an asyncio.Queue: thousands of
    these stay open, and each queue, lock and event costs memory and time per delivery.

    A spectator's (`spectator`) sees exactly the events whose audience is the whole room:
    every spectator of a room sees the same, so the fan-out filters and encodes a batch
    for all of them once (`Batch.public`), and no event waits in their queue for a deal.
    """

    __slots__ = (
        "_final",
        "_items",
        "_waiter",
        "aborted",
        "channel",
        "close_reason",
        "dealing",
        "held",
        "last_sent",
        "queue_size",
        "room_id",
        "sink",
        "spectator",
        "transport",
        "viewer",
    )

    def __init__(
        self, room_id: uuid.UUID, viewer: Viewer, transport: str, queue_size: int, *, spectator: bool = False
    ) -> None:
        self.room_id = room_id
        self.viewer = viewer
        self.spectator = spectator
        self.transport = transport
        self.queue_size = queue_size
        self.last_sent = 0
        self.close_reason: str | None = None
        self._items: deque[Outgoing | object] = deque()
        self._waiter: asyncio.Future[None] | None = None
        # Set when the writer must stop at once, even in the middle of a blocked send.
        self.aborted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._final: Closed | None = None
        # Set by the writer while it waits for live events, when its server lets it write directly.
        self.sink: Sink | None = None
        # The room's channel once registered; replies held for its next flush (see send_control).
        self.channel: RoomChannel | None = None
        self.held: list[BaseModel] = []
        # This player's role.assigned events queued and not yet taken: until taken, the team
        # the viewer plays for is not settled (a rematch may deal them another).
        self.dealing = 0

    def pending(self) -> int:
        """Return how many items wait to be written."""
        return len(self._items)

    def _put(self, item: object) -> bool:
        """Queue `item` and wake the writer; False when the queue is full."""
        if len(self._items) >= self.queue_size:
            return False
        self._items.append(item)
        self._wake()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def offer(self, item: Outgoing) -> None:
        """Queue `item` if this player may see it; close the connection when it cannot keep up."""
        if self.close_reason is not None or item.seq <= self.last_sent:
            return
        if not may_see(self.viewer, item.visibility, item.audience) and not (
            # Before the deal a viewer has no team yet, and after a rematch's deal, queued,
            # another may be theirs; their own role.assigned, ahead in the queue or in the
            # replay, settles it. Decided again when the event is taken. A spectator is dealt
            # nothing.
            item.visibility == Visibility.team
            and not self.spectator
            and (self.viewer.team is None or self.dealing)
        ):
            return
        if not self._put(item):
            metrics.SLOW_CONSUMERS.inc()
            self.close(SLOW)
            return
        if item.dealt_team is not None:
            self.dealing += 1
        if item.removes == self.viewer.player_id:
            self.close(REMOVED)

    def offer_batch(self, batch: Batch) -> int:
        """Hand this connection new events of its room, in order: written at once when its
        writer waits with nothing queued, else queued for the writer one by one. Return how
        many were written at once (the caller counts them, once per batch)."""
        if self.close_reason is not None:
            return 0
        written = self._write_directly(batch)
        if written is None:
            held, self.held = self.held, []
            for reply in held:
                self._put_control(reply)
            for item in batch.items:
                self.offer(item)
            return 0
        return written

    def _idle_sink(self) -> Sink | None:
        """Return the sink when the writer waits with nothing queued, else None."""
        sink, waiter = self.sink, self._waiter
        if sink is None or self._items or waiter is None or waiter.done():
            return None
        return sink

    def _write_directly(self, batch: Batch) -> int | None:
        """Write what this player may see of `batch` from the fan-out's own loop and return how
        many events that was; None when the writer must send them (no sink, something queued,
        history not yet written, a busy socket).

        Waking the writer task for every event (a future, a task step, the ASGI send and its
        wrappers) costs more than the socket write itself; a room's thousands of idle streams
        are written one after another instead, with one write per stream per batch.
        """
        sink = self._idle_sink()
        if sink is None:
            return None
        if self.spectator:
            public = batch.public()
            if not public.items or public.items[0].seq > self.last_sent:
                return self._write_public(sink, public)
        viewer, last_sent, me = self.viewer, self.last_sent, self.viewer.player_id
        visible: list[Outgoing] = []
        removed = False
        for item in batch.items:
            if item.seq <= last_sent or not may_see(viewer, item.visibility, item.audience):
                continue
            if item.dealt_team is not None:
                # A role.assigned decides which team events come after it, in this batch too.
                viewer = viewer.after(item.type, item.dealt_team)
            last_sent = item.seq
            visible.append(item)
            if item.removes == me:
                removed = True
                break
        held, whole = self.held, len(visible) == len(batch.items)
        if visible or held:
            replies = [reply.model_dump_json() for reply in held] if held else ()
            if not sink.events(batch if whole else Batch(visible), replies):
                return None
            held.clear()
        self.viewer, self.last_sent = viewer, last_sent
        if whole:
            batch.whole += 1
        elif visible:
            now = time.time()
            for item in visible:
                metrics.DELIVERY_LATENCY.observe(max(0.0, now - item.at))
        if removed:
            self.close(REMOVED)
        return len(visible)

    def _write_public(self, sink: Sink, public: Batch) -> int | None:
        """Write a spectator the room's public events of a batch (nothing of them sent yet):
        the same bytes for every spectator of the room, filtered and encoded once."""
        held = self.held
        if public.items or held:
            replies = [reply.model_dump_json() for reply in held] if held else ()
            if not sink.events(public, replies):
                return None
            held.clear()
        if public.items:
            self.last_sent = public.items[-1].seq
            public.whole += 1
        return len(public.items)

    def has_work(self) -> bool:
        """Return whether items wait to be written or the stream's end is to be handled."""
        return bool(self._items) or self._final is not None

    def park(self, wake: Callable[[asyncio.Future[None]], None]) -> None:
        """Wait for work without a writer task: `wake` is called from the loop when something
        is queued or the stream ends (at once if that is so already). Meanwhile the fan-out
        writes straight to the sink, as while a writer waits in `next_batch`."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(wake)
        self._waiter = waiter
        if self.has_work():
            waiter.set_result(None)

    def heartbeat(self) -> None:
        """Queue a keep-alive, unless data is already waiting to go out."""
        if self.close_reason is None and not self._items:
            self._put(HEARTBEAT)

    def send_control(self, item: BaseModel) -> None:
        """Send a reply (ack, error) that is not an event of the log: at once when the writer
        waits with nothing queued, else through its queue.

        When the room's events are about to be offered (a flush is due on this turn of the
        loop, as after this player's own command), the reply waits for them and goes out in
        the same socket write, ahead of them: one write and one wake-up of the client fewer.
        """
        if self.close_reason is not None:
            return
        sink = self._idle_sink()
        if sink is not None:
            channel = self.channel
            if channel is not None and channel.flush is not None and self in channel.connections:
                self.held.append(item)
                return
            if sink.text(item.model_dump_json()):
                return
        self._put_control(item)

    def _put_control(self, item: BaseModel) -> None:
        if not self._put(item):
            metrics.SLOW_CONSUMERS.inc()
            self.close(SLOW)

    def close(self, reason: str) -> None:
        """End the stream after what is queued (or at once, for a slow consumer)."""
        self._end(reason, at_once=reason == SLOW)

    def abort(self, reason: str) -> None:
        """End the stream at once, dropping what is queued and stopping a blocked send."""
        self._end(reason, at_once=True)

    def _end(self, reason: str, at_once: bool) -> None:
        if self.close_reason is not None:
            if at_once and not self.aborted.done():
                self._items.clear()
                self.aborted.set_result(None)
            return
        if self.held and not at_once:
            # Replies held for a flush that will no longer offer events to this connection.
            held, self.held = self.held, []
            for reply in held:
                self._put(reply)
        self.close_reason = reason
        self._final = Closed(reason)
        if at_once:
            # What is queued is dropped: the client resumes from the last seq it received.
            self._items.clear()
            if not self.aborted.done():
                self.aborted.set_result(None)
        self._wake()  # a waiting writer must notice

    async def next_batch(self, limit: int = 64) -> list[Outgoing | object]:
        """Wait for the next item, then take what else is queued: one write for a burst.

        Raises `Closed` once the stream is over and everything queued before has been handed out.
        """
        items: list[Outgoing | object] = []
        queued = self._items
        while not items:
            if not queued:
                if self._final is not None:
                    raise self._final
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                continue
            items = self.take_batch(limit)
        return items

    def take_batch(self, limit: int = 64) -> list[Outgoing | object]:
        """Take up to `limit` queued items, without waiting: those to write, possibly none.

        Raises `Closed` when nothing is queued and the stream is over.
        """
        items: list[Outgoing | object] = []
        queued = self._items
        if not queued and self._final is not None:
            raise self._final
        if queued:
            now = time.time()
            delivered = 0
            for _ in range(min(limit, len(queued))):
                item = queued.popleft()
                if isinstance(item, Outgoing):
                    if item.dealt_team is not None:
                        self.dealing -= 1
                    if item.seq <= self.last_sent:
                        continue  # already sent by the replay
                    if not may_see(self.viewer, item.visibility, item.audience):
                        continue
                    self.viewer = self.viewer.after(item.type, item.dealt_team)
                    self.last_sent = item.seq
                    delivered += 1
                    metrics.DELIVERY_LATENCY.observe(max(0.0, now - item.at))
                items.append(item)
            if delivered:
                metrics.EVENTS_DELIVERED.add(self.transport, delivered)
        return items

    async def next(self) -> Outgoing | object:
        """Return the next item to send; raise Closed when the stream is over."""
        return (await self.next_batch(1))[0]


@dataclass(eq=False)
class RoomChannel:
    """The connections of one room in this process, and how far the hub has read its log."""

    room_id: uuid.UUID
    connections: set[Connection] = field(default_factory=set)
    last_read: int | None = None
    wanted: int = 0
    pumping: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Events read (or handed off) but not yet offered to the connections; see Hub._flush.
    ready: list[Outgoing] = field(default_factory=list)
    flush: asyncio.Handle | None = None


class Hub:
    """Hands every connection of this process the new events of its room."""

    def __init__(self, db: Database, catchup_seconds: float, heartbeat_seconds: float) -> None:
        self.db = db
        self.catchup_seconds = catchup_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.rooms: dict[uuid.UUID, RoomChannel] = {}
        self._timer: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        # Rooms whose new events are to be read, and the task reading them (see _pump_soon).
        self._behind: list[RoomChannel] = []
        self._reader: asyncio.Task[None] | None = None
        self.on_open: Callable[[Connection], None] | None = None

    def start(self) -> None:
        """Start the catch-up and heartbeat timers."""
        self._timer = asyncio.create_task(self._catch_up_forever(), name="hub-catch-up")
        self._beat = asyncio.create_task(self._heartbeat_forever(), name="hub-heartbeat")

    async def _heartbeat_forever(self) -> None:
        # One timer for every idle connection, rather than a timer task per connection.
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            for channel in list(self.rooms.values()):
                for conn in list(channel.connections):
                    conn.heartbeat()

    async def stop(self) -> None:
        """Stop the timer and close every connection."""
        for timer in (self._timer, self._beat):
            if timer:
                timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timer
        for channel in self.rooms.values():
            for conn in list(channel.connections):
                conn.close(SHUTDOWN)
        if self._reader is not None:
            self._reader.cancel()

    async def register(self, conn: Connection) -> None:
        """Start handing `conn` its room's events; call before replaying its history."""
        while True:
            channel = self.rooms.get(conn.room_id)
            if channel is None:
                channel = self.rooms[conn.room_id] = RoomChannel(conn.room_id)
            async with channel.lock:
                if self.rooms.get(conn.room_id) is not channel:
                    continue  # dropped while this one waited: take the room's channel now
                if channel.last_read is None:
                    try:
                        async with self.db.driver(transaction=False) as db:
                            seqs = await last_seqs(db, [conn.room_id])
                    except BaseException:
                        # The database cannot say where the log is: no stream opens (its client
                        # retries), and no channel is left behind for a room nobody watches.
                        if not channel.connections:
                            del self.rooms[conn.room_id]
                        raise
                    channel.last_read = seqs.get(conn.room_id, 0)
                    channel.wanted = max(channel.wanted, channel.last_read)
                channel.connections.add(conn)
                conn.channel = channel
                break
        metrics.OPEN_STREAMS.labels(conn.transport).inc()

    def unregister(self, conn: Connection) -> None:
        """Stop handing `conn` events."""
        channel = self.rooms.get(conn.room_id)
        if channel is None or conn not in channel.connections:
            return
        channel.connections.discard(conn)
        metrics.OPEN_STREAMS.labels(conn.transport).dec()
        if not channel.connections and not channel.pumping:
            del self.rooms[conn.room_id]

    def doorbell(self, room_id: uuid.UUID, seq: int, source: str = "local") -> None:
        """Note that the room's log reaches `seq`; read what is new, once, for every connection."""
        metrics.DOORBELLS.labels(source).inc()
        channel = self.rooms.get(room_id)
        if channel is None:
            return
        channel.wanted = max(channel.wanted, seq)
        self._pump_soon(channel)

    def handoff(self, room_id: uuid.UUID, stored: Sequence[StoredEvent]) -> None:
        """Deliver events this process just committed without reading them back, when they are
        exactly the next ones the hub expects for the room; otherwise the doorbell reads them."""
        channel = self.rooms.get(room_id)
        if (
            channel is None
            or channel.pumping
            or channel.last_read is None
            or not stored
            or stored[0].seq != channel.last_read + 1
        ):
            return
        self._deliver(channel, stored)

    @staticmethod
    def _deliver(channel: RoomChannel, stored: Sequence[StoredEvent]) -> None:
        """Serialise each event once, note it read, and offer it to the room's connections
        on the loop's next turn."""
        channel.ready.extend(prepare(channel.room_id, event) for event in stored)
        channel.last_read = stored[-1].seq
        channel.wanted = max(channel.wanted, channel.last_read)
        if channel.flush is None:
            channel.flush = asyncio.get_running_loop().call_soon(Hub._flush, channel)

    @staticmethod
    def _flush(channel: RoomChannel) -> None:
        """Offer every ready event to every connection of the room, as one batch.

        Run on the loop's next turn rather than inside the command: the command's own answer
        is written first, and the events of every command that committed meanwhile (a burst)
        go out together, one write per connection instead of one per event.
        """
        channel.flush = None
        if not channel.ready:
            return
        batch = Batch(channel.ready)
        channel.ready = []
        written = {"sse": 0, "ws": 0}
        for conn in list(channel.connections):
            try:
                count = conn.offer_batch(batch)
            except Exception:
                # A socket that fails under a direct write must not cost the others their
                # events: that stream ends, its client resumes by seq.
                log.exception("writing to a %s stream failed; closing it", conn.transport)
                conn.abort(BROKEN)
                continue
            if count:
                written[conn.transport] += count
        batch.observe_whole()
        for transport, count in written.items():
            if count:  # counted once per batch
                metrics.EVENTS_DELIVERED.add(transport, count)
                metrics.WRITTEN_DIRECTLY.add(transport, count)

    def _pump_soon(self, channel: RoomChannel) -> None:
        """Have the room's new events read: with those of every other room rung meanwhile,
        in one statement (one reader per process, like the group commit's writer)."""
        if channel.pumping or channel.last_read is None or channel.wanted <= channel.last_read:
            return
        channel.pumping = True
        self._behind.append(channel)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_behind(), name="hub-reader")

    async def _read_behind(self) -> None:
        group: dict[uuid.UUID, RoomChannel] = {}
        try:
            while self._behind:
                group = {channel.room_id: channel for channel in self._behind[:READ_GROUP]}
                self._behind = self._behind[READ_GROUP:]
                try:
                    async with self.db.driver(transaction=False) as db:
                        found = await read_events_of_rooms(
                            db, {room_id: ch.last_read or 0 for room_id, ch in group.items()}
                        )
                except Exception as exc:
                    log_failure(log, exc, "reading %d room(s) failed; the catch-up timer retries", len(group))
                    found = {}
                for room_id, channel in group.items():
                    stored = found.get(room_id)
                    if stored:
                        self._deliver(channel, stored)
                    channel.pumping = False
                    if stored:  # more may have come meanwhile (or the read hit its limit)
                        self._pump_soon(channel)
                    if not channel.connections and not channel.pumping and self.rooms.get(room_id) is channel:
                        del self.rooms[room_id]
                group = {}
        finally:
            self._reader = None
            for channel in [*group.values(), *self._behind]:  # cancelled: the timer starts again
                channel.pumping = False
            self._behind = []

    async def _catch_up_forever(self) -> None:
        while True:
            await asyncio.sleep(self.catchup_seconds)
            try:
                await self.catch_up()
            except Exception as exc:
                log_failure(log, exc, "catch-up failed; retrying")

    async def catch_up(self) -> None:
        """Find the watched rooms whose log grew without a doorbell, and read them."""
        watched = [room_id for room_id, ch in self.rooms.items() if ch.last_read is not None]
        if not watched:
            return
        async with self.db.driver(transaction=False) as db:
            newest = await last_seqs(db, watched)
        for room_id, seq in newest.items():
            channel = self.rooms.get(room_id)
            if channel is None or channel.last_read is None:
                continue
            if seq > max(channel.last_read, channel.wanted):
                metrics.DOORBELLS_MISSED.inc()
                channel.wanted = seq
            # Also retries a read that failed earlier.
            self._pump_soon(channel)
