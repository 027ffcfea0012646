"""What every stream does, SSE or WebSocket: register, replay or snapshot, then live."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from types import TracebackType

from backend.contract import api
from backend.core.config import Settings
from backend.core.db import Database, autocommit
from backend.core.ratelimit import RateLimiter
from backend.domain.visibility import Viewer, may_see_event
from backend.persistence.events import read_events
from backend.realtime.broker import Broker, InMemoryBroker, RedisBroker
from backend.realtime.hub import LIFETIME, Closed, Connection, Hub, Outgoing, prepare
from backend.realtime.presence import Presence
from backend.rooms import service
from backend.rooms.service import Actor, Committed

REPLAY_BATCH = 500


class Realtime:
    """A process's realtime machinery: hub, broker, presence and limits."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.hub = Hub(db.engine, settings.catchup_seconds)
        self.broker: Broker = (
            RedisBroker(self.hub, settings.redis_url) if settings.redis_url else InMemoryBroker(self.hub)
        )
        self.presence = Presence(self._set_presence, settings.presence_grace_seconds)
        self.chat_limiter = RateLimiter(settings.chat_per_second, settings.chat_burst)

    async def start(self) -> None:
        """Start the catch-up timer and the doorbell subscription."""
        self.hub.start()
        await self.broker.start()

    async def stop(self) -> None:
        """Close every stream and stop listening."""
        await self.presence.stop()
        await self.hub.stop()
        await self.broker.stop()

    async def committed(self, committed: Committed | None) -> None:
        """Ring the doorbell for what a command committed."""
        if committed is not None:
            await self.broker.publish(committed.room_id, committed.last_seq)

    async def _set_presence(self, room_id: uuid.UUID, player_id: uuid.UUID, connected: bool) -> None:
        async with self.db.transaction() as session:
            committed = await service.set_presence(session, room_id, player_id, connected)
        await self.committed(committed)

    def stream(self, actor: Actor, transport: str, resume: int | None) -> Stream:
        """Return a stream for `actor`; use it as an async context manager."""
        return Stream(self, actor, transport, resume)


class Stream:
    """One player's stream: history first (replay or snapshot), then live events."""

    def __init__(self, realtime: Realtime, actor: Actor, transport: str, resume: int | None) -> None:
        self.rt = realtime
        self.actor = actor
        self.resume = resume
        viewer = Viewer(player_id=str(actor.player_id), team=actor.team)
        self.conn = Connection(actor.room_id, viewer, transport, realtime.settings.stream_queue_size)

    async def __aenter__(self) -> Stream:
        loop = asyncio.get_running_loop()
        # One timer per stream for its lifetime, not a timeout around every event.
        self._lifetime = loop.call_later(self.rt.settings.stream_max_seconds, self.conn.close, LIFETIME)
        # Registered before the history is read: whatever commits after the read is queued.
        await self.rt.hub.register(self.conn)
        await self.rt.presence.opened(self.actor.room_id, self.actor.player_id)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lifetime.cancel()
        self.rt.hub.unregister(self.conn)
        self.rt.presence.closed(self.actor.room_id, self.actor.player_id)

    async def history(self) -> AsyncIterator[Outgoing | api.RoomState]:
        """Yield the snapshot (no resume point) or every visible event after the resume point."""
        if self.resume is None:
            async with self.rt.db.snapshot() as session:
                state = await service.get_state(session, self.actor.room_id, self.actor)
            self.conn.last_sent = state.last_seq
            yield state
            return
        after = self.resume
        while True:
            async with autocommit(self.rt.db.engine) as db:
                batch = await read_events(db, self.actor.room_id, after, REPLAY_BATCH)
            for event in batch:
                if may_see_event(self.conn.viewer, event.visibility, event.audience):
                    yield prepare(self.actor.room_id, event)
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
