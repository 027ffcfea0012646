"""Every worker's deadline scheduler: closes overdue phases, exactly once across workers.

Deadlines are columns (`rooms.phase_ends_at`), compared with the database clock; a worker
takes an overdue room with `FOR NO KEY UPDATE SKIP LOCKED` and runs the same transition as the
host's advance. A restarted server fires the deadlines that passed while it was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from backend.core.db import Database
from backend.game import service
from backend.realtime.streams import Realtime

log = logging.getLogger(__name__)


class Scheduler:
    """Polls for overdue phases every `interval` seconds and closes them."""

    def __init__(self, db: Database, realtime: Realtime, interval: float) -> None:
        self.db = db
        self.realtime = realtime
        self.interval = interval
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
            self.realtime.committed(committed)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self.tick()
                failures = 0
                await asyncio.sleep(self.interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be down: keep polling, back off
                failures += 1
                log.warning("deadline scheduler: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(min(5.0, self.interval * 2**failures))
