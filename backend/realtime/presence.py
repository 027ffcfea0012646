"""Presence: a player's first open stream connects them, their last closed stream disconnects.

Each process counts its own streams and holds a lease in PostgreSQL per player it streams
to; the player is connected while any living process holds one (see service.set_presence).
A disconnect waits `grace` seconds, so a quick reconnect is silent. Leases are renewed
while the process lives; a dead process's lapse, and any process sweeps the players they
left connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from backend.core.problems import log_failure

log = logging.getLogger(__name__)

Key = tuple[uuid.UUID, uuid.UUID]  # (room, player)
Setter = Callable[[uuid.UUID, uuid.UUID, bool], Awaitable[None]]
Maintain = Callable[[], Awaitable[None]]


class Presence:
    """Counts each player's open streams in this process and records the edges."""

    def __init__(self, set_connected: Setter, maintain: Maintain, grace: float, every: float) -> None:
        self._set = set_connected
        self._maintain = maintain
        self.grace = grace
        self.every = every
        self.counts: dict[Key, int] = {}
        self._leaving: dict[Key, asyncio.Task[None]] = {}
        # Each player's newest record in flight: the next one waits for it.
        self._recording: dict[Key, asyncio.Future[None]] = {}
        self._maintainer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Renew this process's leases and sweep dead processes' players, periodically."""
        self._maintainer = asyncio.create_task(self._maintain_forever(), name="presence-leases")

    async def _maintain_forever(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self._maintain()
            except Exception as exc:
                log_failure(log, exc, "presence leases not renewed; retrying")

    async def opened(self, room_id: uuid.UUID, player_id: uuid.UUID) -> None:
        """A stream of the player opened."""
        key = (room_id, player_id)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] > 1:
            return
        leaving = self._leaving.pop(key, None)
        if leaving is not None:
            leaving.cancel()  # back within the grace period: nobody noticed
            return
        await self._record(room_id, player_id, True)

    def closed(self, room_id: uuid.UUID, player_id: uuid.UUID) -> None:
        """A stream of the player closed."""
        key = (room_id, player_id)
        left = self.counts.get(key, 0) - 1
        if left > 0:
            self.counts[key] = left
            return
        self.counts.pop(key, None)
        self._leaving[key] = asyncio.create_task(self._leave_later(key))

    async def _leave_later(self, key: Key) -> None:
        await asyncio.sleep(self.grace)
        if self._leaving.get(key) is asyncio.current_task():
            del self._leaving[key]
            await self._record(*key, False)

    async def _record(self, room_id: uuid.UUID, player_id: uuid.UUID, connected: bool) -> None:
        # One record per player at a time, in the order asked: a disconnect recorded after its
        # grace period and a reconnect arriving meanwhile must not commit the other way round
        # (the player would show disconnected with a stream open).
        key = (room_id, player_id)
        previous = self._recording.get(key)
        self._recording[key] = done = asyncio.get_running_loop().create_future()
        try:
            if previous is not None:
                await asyncio.shield(previous)
            await self._set(room_id, player_id, connected)
        except Exception as exc:
            log_failure(log, exc, "presence of %s not recorded", player_id)
        finally:
            done.set_result(None)
            if self._recording.get(key) is done:
                del self._recording[key]

    async def stop(self) -> None:
        """Drop pending disconnects (the process is going away)."""
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        for task in self._leaving.values():
            task.cancel()
        for task in list(self._leaving.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._leaving.clear()
