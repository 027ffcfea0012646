"""What every stream does, SSE or WebSocket: register, replay or snapshot, then live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from types import TracebackType

from sse_starlette import EventSourceResponse

from backend.contract import api
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.problems import ServerBusy, TooManyStreams, log_failure
from backend.core.ratelimit import RateLimits
from backend.core.server import on_shutdown, raise_descriptor_limit, stream_cap
from backend.games.projection import Viewer, may_see
from backend.persistence.events import GroupCommit, read_events
from backend.realtime import metrics
from backend.realtime.broker import Broker, InMemoryBroker, RedisBroker
from backend.realtime.hub import LIFETIME, SHUTDOWN, Closed, Connection, Hub, Outgoing, prepare
from backend.realtime.presence import Presence
from backend.realtime.stream_caps import ALIVE_SECONDS, WATCH_PREFIX, SharedStreamCounts
from backend.rooms import repository, service
from backend.rooms.service import Actor, Committed

log = logging.getLogger(__name__)

REPLAY_BATCH = 500
LEASE_RENEW_SECONDS = repository.LEASE_TTL_SECONDS / 3
NO_WORKER = uuid.UUID(int=0)


class StreamSlots:
    """Open streams (SSE and WebSocket together) per player and in all, in this process.

    Taken before a stream is answered, given back when it ends: over the player's cap a new
    stream is refused (429 `too_many_streams`), over the process's cap too (503
    `server_busy`), before the process runs out of descriptors.
    """

    def __init__(self, per_player: int, total: int, retry_after: int) -> None:
        self.per_player = per_player
        self.total = total
        self.retry_after = retry_after
        self.held: dict[uuid.UUID, int] = {}
        self.open = 0

    def take(self, player_id: uuid.UUID) -> None:
        """Count a new stream of the player, or refuse it."""
        held = self.held.get(player_id, 0)
        if held >= self.per_player:
            raise TooManyStreams(self.per_player, self.retry_after)
        if self.open >= self.total:
            raise ServerBusy(self.retry_after)
        self.held[player_id] = held + 1
        self.open += 1

    def give_back(self, player_id: uuid.UUID) -> None:
        """Forget one stream of the player."""
        left = self.held.get(player_id, 0) - 1
        if left > 0:
            self.held[player_id] = left
        else:
            self.held.pop(player_id, None)
        self.open = max(0, self.open - 1)


class Realtime:
    """A process's realtime machinery: hub, broker, presence and limits."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        db.on_commit = lambda room_id, last_seq: self.committed(Committed(room_id, last_seq))
        self.settings = settings
        self.hub = Hub(db, settings.catchup_seconds, settings.heartbeat_seconds)
        self.broker: Broker = (
            RedisBroker(self.hub, settings.redis_url) if settings.redis_url else InMemoryBroker(self.hub)
        )
        # This process, as presence leases name it.
        self.worker_id = uuid.uuid4()
        self.presence = Presence(
            self._set_presence, self._maintain_presence, settings.presence_grace_seconds, LEASE_RENEW_SECONDS
        )
        self.limits = RateLimits(settings)
        self.speakers = service.KnownSpeakers()
        self.appends = GroupCommit(lambda: db.driver(transaction=False), metrics.count_group_commit)
        # Every worker raises its own descriptor limit; the stream cap stays below it.
        descriptors = raise_descriptor_limit()
        self.slots = StreamSlots(
            settings.max_streams_per_player,
            stream_cap(settings.max_streams, descriptors),
            settings.streams_retry_after_seconds,
        )
        # With Redis, the per-player cap holds across workers too.
        self.shared_streams = (
            SharedStreamCounts(
                settings.redis_url,
                self.worker_id,
                settings.max_streams_per_player,
                hash_ttl=2 * int(settings.stream_max_seconds) + ALIVE_SECONDS,
            )
            if settings.redis_url
            else None
        )
        # Spectators' open streams per room, in this process and (with Redis) across workers.
        self.watching_here: dict[uuid.UUID, int] = {}
        self.shared_watching = (
            SharedStreamCounts(
                settings.redis_url,
                self.worker_id,
                2**31,
                hash_ttl=2 * int(settings.stream_max_seconds) + ALIVE_SECONDS,
                prefix=WATCH_PREFIX,
            )
            if settings.redis_url
            else None
        )
        # Set once the server is told to exit: streams end cleanly rather than hold it up.
        self.exiting = False
        self.exit_signal: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._exit_watch: asyncio.Task[None] | None = None
        self._forget_shutdown: Callable[[], None] | None = None

    async def start(self) -> None:
        """Start the catch-up timer and the doorbell subscription."""
        self.hub.start()
        self.presence.start()
        # Our uvicorn protocols say when the server starts to shut down (before it waits for
        # open connections); sse-starlette's signal is the fallback under another server.
        self._forget_shutdown = on_shutdown(self.begin_exit)
        self._exit_watch = asyncio.create_task(self._exit_on_signal(), name="sse-exit")
        await self.broker.start()
        if self.shared_streams is not None:
            await self.shared_streams.start()
        if self.shared_watching is not None:
            await self.shared_watching.start()

    async def _exit_on_signal(self) -> None:
        # sse-starlette's shutdown signal (it hooks uvicorn's exit), heard once per process
        # instead of by a task per stream.
        await EventSourceResponse._listen_for_exit_signal()
        self.begin_exit()

    def begin_exit(self) -> None:
        """The server is shutting down: end every stream cleanly, new ones at once.

        An SSE stream sends what is queued and then ends its chunked response properly
        (the client resumes elsewhere by Last-Event-ID). A WebSocket takes no new command,
        answers the one in flight and closes with 1001 (see endpoints._serve_socket).
        """
        if self.exiting:
            return
        self.exiting = True
        if not self.exit_signal.done():
            self.exit_signal.set_result(None)
        for channel in list(self.hub.rooms.values()):
            for conn in list(channel.connections):
                if conn.transport == "sse":
                    conn.close(SHUTDOWN)

    async def stop(self) -> None:
        """Close every stream and stop listening."""
        if self._forget_shutdown is not None:
            self._forget_shutdown()
        if self._exit_watch is not None:
            self._exit_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._exit_watch
        await self.presence.stop()
        await self.hub.stop()
        await self.broker.stop()
        await self.limits.close()
        if self.shared_streams is not None:
            await self.shared_streams.stop()
        if self.shared_watching is not None:
            await self.shared_watching.stop()
        try:
            # Its players are swept to disconnected by whichever process runs next.
            async with self.db.transaction() as session:
                await repository.drop_worker_leases(session, self.worker_id)
        except Exception as exc:
            log_failure(log, exc, "stream leases not dropped; they lapse")

    async def open_streams(self, ids: list[uuid.UUID]) -> int:
        """Return how many streams these players (or spectators) hold open: across workers
        when Redis counts them, else in this process."""
        if self.shared_streams is not None:
            counts = await self.shared_streams.totals(ids)
            if counts is not None:
                return sum(counts)
        return sum(self.slots.held.get(i, 0) for i in ids)

    async def watching(self, room_id: uuid.UUID) -> int:
        """Return how many spectator streams are open on the room: across workers when Redis
        counts them, else in this process."""
        if self.shared_watching is not None:
            counts = await self.shared_watching.totals([room_id])
            if counts is not None:
                return counts[0]
        return self.watching_here.get(room_id, 0)

    async def watch(self, room_id: uuid.UUID) -> bool:
        """Count a spectator stream opened on the room; return whether Redis counted it too
        (then `unwatch(room_id, shared=True)` when it ends)."""
        self.watching_here[room_id] = self.watching_here.get(room_id, 0) + 1
        return self.shared_watching is not None and await self.shared_watching.take(room_id) is True

    def unwatch(self, room_id: uuid.UUID, *, shared: bool) -> None:
        """Forget a spectator stream counted by `watch` (never waits)."""
        left = self.watching_here.get(room_id, 0) - 1
        if left > 0:
            self.watching_here[room_id] = left
        else:
            self.watching_here.pop(room_id, None)
        if shared and self.shared_watching is not None:
            self.shared_watching.give_back(room_id)

    def committed(self, committed: Committed | None) -> None:
        """Ring the doorbell for what a command committed (never waits: see Broker.publish)."""
        if committed is not None:
            if committed.events:
                self.hub.handoff(committed.room_id, committed.events)
            self.broker.publish(committed.room_id, committed.last_seq)

    async def _set_presence(
        self, room_id: uuid.UUID, player_id: uuid.UUID, connected: bool, worker_id: uuid.UUID | None = None
    ) -> None:
        worker = worker_id or self.worker_id
        if connected:
            # A player the room already shows connected (a reconnect after a crash, a stream on
            # another worker) takes the lease in one statement, without the room's lock.
            async with self.db.driver(transaction=False) as conn:
                if await repository.hold_lease_if_connected(conn, worker, room_id, player_id):
                    return
        async with self.db.transaction() as session:  # rings for the presence event once committed
            await service.set_presence(session, room_id, player_id, connected, worker)

    async def _maintain_presence(self) -> None:
        async with self.db.transaction() as session:
            await repository.renew_leases(session, self.worker_id)
        async with self.db.read() as session:
            orphans = await repository.orphaned_presence(session)
        for room_id, player_id in orphans:
            # Under the room lock, set_presence checks again that no living worker streams to them.
            await self._set_presence(room_id, player_id, False, worker_id=NO_WORKER)

    async def open_stream(self, actor: Actor, transport: str, resume: int | None) -> Stream:
        """Return a stream for `actor`, counted against the caps (or raise TooManyStreams,
        ServerBusy); use it as an async context manager, and call `release` when it is over
        (also if it never ran)."""
        self.slots.take(actor.player_id)
        shared = False
        try:
            if self.shared_streams is not None:
                counted = await self.shared_streams.take(actor.player_id)
                if counted is False:
                    raise TooManyStreams(self.slots.per_player, self.slots.retry_after)
                shared = counted is True
            stream = Stream(self, actor, transport, resume)
        except BaseException:
            self.slots.give_back(actor.player_id)
            if shared and self.shared_streams is not None:
                self.shared_streams.give_back(actor.player_id)
            raise
        stream.shared = shared
        return stream


class Stream:
    """One player's (or spectator's) stream: history first (replay or snapshot), then live events."""

    def __init__(self, realtime: Realtime, actor: Actor, transport: str, resume: int | None) -> None:
        self.rt = realtime
        self.actor = actor
        self.resume = resume
        viewer = Viewer(player_id=str(actor.player_id), team=actor.team)
        self.conn = Connection(
            actor.room_id, viewer, transport, realtime.settings.stream_queue_size, spectator=actor.spectator
        )
        # Its slot in realtime.slots (and in realtime.shared_streams when `shared`), until released.
        self._counted = True
        self.shared = False
        # A spectator's stream is counted in the room's watchers while it is open (see
        # Realtime.watch); `watched_shared` when Redis counted it too.
        self._watched = False
        self.watched_shared = False
        # Set while a command read from this stream (a WebSocket's) is being carried out.
        self.commanding = False
        self._ended = False

    def release(self) -> None:
        """Give the stream's slot back (once)."""
        if self._counted:
            self._counted = False
            self.rt.slots.give_back(self.actor.player_id)
            if self.shared and self.rt.shared_streams is not None:
                self.rt.shared_streams.give_back(self.actor.player_id)

    async def __aenter__(self) -> Stream:
        loop = asyncio.get_running_loop()
        # One timer per stream for its lifetime, not a timeout around every event.
        self._lifetime = loop.call_later(self.rt.settings.stream_max_seconds, self.conn.close, LIFETIME)
        # Registered before the history is read: whatever commits after the read is queued.
        await self.rt.hub.register(self.conn)
        if self.actor.spectator:
            # Not a player: no presence, no lease; counted among the room's watchers instead.
            self._watched = True
            self.watched_shared = await self.rt.watch(self.actor.room_id)
        else:
            await self.rt.presence.opened(self.actor.room_id, self.actor.player_id)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end()

    def end(self) -> None:
        """Undo what entering did (once): the stream is over."""
        if self._ended:
            return
        self._ended = True
        self._lifetime.cancel()
        self.release()
        self.rt.hub.unregister(self.conn)
        if self.actor.spectator:
            if self._watched:
                self._watched = False
                self.rt.unwatch(self.actor.room_id, shared=self.watched_shared)
        else:
            self.rt.presence.closed(self.actor.room_id, self.actor.player_id)

    async def history(self) -> AsyncIterator[Outgoing | api.RoomState]:
        """Yield the snapshot (no resume point) or every visible event after the resume point."""
        if self.resume is None:
            async with self.rt.db.snapshot() as session:
                state = await service.get_state(session, self.actor.room_id, self.actor)
            self.conn.last_sent = state.last_seq
            # The snapshot may already include the deal the stream was opened before.
            if state.me is not None and state.me.team is not None:
                self.conn.viewer = Viewer(str(self.actor.player_id), state.me.team.value)
            yield state
            return
        after = self.resume
        while True:
            async with self.rt.db.driver(transaction=False) as db:
                batch = await read_events(db, self.actor.room_id, after, REPLAY_BATCH)
            for event in batch:
                if may_see(self.conn.viewer, event.visibility, event.audience):
                    outgoing = prepare(self.actor.room_id, event)
                    self.conn.viewer = self.conn.viewer.after(outgoing.type, outgoing.dealt_team)
                    yield outgoing
            if batch:
                after = batch[-1].seq
            self.conn.last_sent = after
            if len(batch) < REPLAY_BATCH:
                return

    async def live(self) -> AsyncIterator[list[Outgoing | object]]:
        """Yield batches of live events and replies until the stream's lifetime is over.

        Raises `Closed` when the server ends the stream early (slow consumer, player removed,
        shutdown).
        """
        while True:
            try:
                batch = await self.conn.next_batch()
            except Closed as closed:
                if closed.reason == LIFETIME:
                    return
                raise
            yield batch
