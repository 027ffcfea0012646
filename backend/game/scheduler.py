"""Every worker's deadline scheduler: closes overdue phases, exactly once across workers.

Deadlines are columns (`rooms.phase_ends_at`), compared with the database clock; a worker
takes an overdue room with `FOR NO KEY UPDATE SKIP LOCKED` and runs the same transition as the
host's advance. A restarted server fires the deadlines that passed while it was down.

Less often (`sweep_every` seconds) it also runs the room lifecycle (backend.game.lifecycle):
idle lobbies and abandoned games close, ended rooms past their retention are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from backend.core.db import Database
from backend.game import lifecycle, service
from backend.realtime.streams import Realtime

log = logging.getLogger(__name__)


class Scheduler:
    """Polls for overdue phases every `interval` seconds and closes them."""

    def __init__(
        self,
        db: Database,
        realtime: Realtime,
        interval: float,
        lifetimes: lifecycle.Lifetimes | None = None,
        sweep_every: float = 5.0,
    ) -> None:
        self.db = db
        self.realtime = realtime
        self.interval = interval
        self.lifetimes = lifetimes
        self.sweep_every = sweep_every
        self._next_sweep = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling."""
        self._task = asyncio.create_task(self._run(), name="deadline-scheduler")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def tick(self) -> int:
        """Close every phase that is overdue now; return how many closed."""
        closed = 0
        while True:
            async with self.db.transaction() as session:
                committed = await service.close_overdue_phase(session)
            if committed is None:
                return closed
            closed += 1

    async def sweep(self) -> tuple[int, int]:
        """Close the idle lobbies and abandoned games, and delete the rooms past their retention,
        that are due now; return (closed, purged)."""
        closed = purged = 0
        if self.lifetimes is None:
            return closed, purged
        async with self.db.read() as session:
            due = await lifecycle.due_rooms(session, self.lifetimes)
        for room_id, why in due:
            if why == lifecycle.PURGE:
                continue
            async with self.db.transaction() as session:
                committed = await lifecycle.close_idle_room(session, room_id, why, self.lifetimes)
            if committed is not None:
                closed += 1
                log.info("room %s closed: %s", room_id, why)
        purge = [room_id for room_id, why in due if why == lifecycle.PURGE]
        if purge:
            async with self.db.transaction() as session:
                purged = await lifecycle.purge_rooms(session, purge, self.lifetimes)
            if purged:
                log.info("%d ended rooms purged", purged)
        return closed, purged

    async def _sweep_when_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_every
            await self.sweep()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self.tick()
                await self._sweep_when_due()
                failures = 0
                await asyncio.sleep(self.interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be down: keep polling, back off
                failures += 1
                log.warning("deadline scheduler: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(min(5.0, self.interval * 2**failures))
