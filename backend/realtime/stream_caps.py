"""Each player's open streams counted across workers, in Redis, so the per-player cap holds
with `WORKERS=N` and several hosts (a process alone counts its own, see StreamSlots).

A hash per player holds each worker's count; a worker's fields count while its liveness key
lives (renewed every few seconds), so a crashed worker's streams stop counting once its key
lapses, and the next admission drops them. Admission is one Lua script (atomic): the sum of
the living workers' counts against the cap, then this worker's count + 1. When Redis does
not answer in time, the stream is admitted on this process's count alone (a stream is
never refused for want of Redis), and Redis is left alone for a second. A count not given
back (Redis away) is set right from this worker's own count when Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from redis.asyncio import BlockingConnectionPool, Redis

log = logging.getLogger(__name__)

PREFIX = "roundtable:streams:"
# A room's spectator streams, counted the same way (no cap): how many are watching.
WATCH_PREFIX = "roundtable:watching:"
WORKER_PREFIX = "roundtable:stream-worker:"
ALIVE_SECONDS = 30
RENEW_SECONDS = 10
# After Redis failed to answer, streams are admitted without it for this long.
BACK_OFF_SECONDS = 1.0

# KEYS[1] the player's hash; ARGV: worker id, cap, worker key prefix, hash TTL (s).
_ADMIT = """
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local worker = fields[i]
  if worker == ARGV[1] or redis.call('EXISTS', ARGV[3] .. worker) == 1 then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], worker)
  end
end
if total >= tonumber(ARGV[2]) then
  return -1
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return total + 1
"""

# KEYS the hashes to sum; ARGV[1] worker key prefix. Each hash's living workers' counts.
_TOTALS = """
local out = {}
for k = 1, #KEYS do
  local total = 0
  local fields = redis.call('HGETALL', KEYS[k])
  for i = 1, #fields, 2 do
    if redis.call('EXISTS', ARGV[1] .. fields[i]) == 1 then
      total = total + tonumber(fields[i + 1])
    end
  end
  out[k] = total
end
return out
"""

# KEYS[1] the player's hash; ARGV[1] worker id.
_RELEASE = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return left
"""


class SharedStreamCounts:
    """Players' open streams across workers (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        worker_id: uuid.UUID,
        cap: int,
        hash_ttl: int,
        timeout: float = 0.5,
        prefix: str = PREFIX,
    ) -> None:
        self.prefix = prefix
        self.worker = str(worker_id)
        self.cap = cap
        self.hash_ttl = hash_ttl
        self.timeout = timeout
        # A storm of streams opening or closing at once (a thousand reconnecting) makes as many
        # calls at once: they queue for one of a few connections, within the same timeout,
        # rather than fail on the pool's limit and drop every cap to this process's count.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=16, timeout=timeout, socket_connect_timeout=1, socket_timeout=timeout
        )
        self._redis = Redis.from_pool(pool)  # owns the pool: aclose() closes it
        self._admit = self._redis.register_script(_ADMIT)
        self._release = self._redis.register_script(_RELEASE)
        self._totals = self._redis.register_script(_TOTALS)
        self._alive: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        # What this worker's fields hold, as far as it knows, and the players whose field
        # may be wrong (a give-back that failed).
        self.mine: dict[uuid.UUID, int] = {}
        self._dirty: set[uuid.UUID] = set()
        self._skip_until = 0.0

    async def start(self) -> None:
        """Keep this worker's liveness key alive (set before any stream is counted)."""
        await self._renew()
        self._alive = asyncio.create_task(self._stay_alive(), name="stream-counts-alive")

    async def _renew(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._redis.set(WORKER_PREFIX + self.worker, 1, ex=ALIVE_SECONDS)
        except Exception as exc:
            log.warning("stream counts: liveness not renewed (%s)", type(exc).__name__)

    async def _stay_alive(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            await self._renew()
            await self._set_right()

    async def _set_right(self) -> None:
        for player_id in list(self._dirty):
            key, held = self.prefix + str(player_id), self.mine.get(player_id, 0)
            try:
                async with asyncio.timeout(self.timeout):
                    if held > 0:
                        await self._redis.hset(key, self.worker, held)
                    else:
                        await self._redis.hdel(key, self.worker)
            except Exception:
                return  # next time
            self._dirty.discard(player_id)

    def _failed(self, exc: Exception, what: str) -> None:
        if self._skip_until <= asyncio.get_running_loop().time():
            log.warning(
                "stream counts: %s (%s); this process's count alone for now", what, type(exc).__name__
            )
        self._skip_until = asyncio.get_running_loop().time() + BACK_OFF_SECONDS

    async def take(self, player_id: uuid.UUID) -> bool | None:
        """Count a new stream of the player: True when counted, False over the cap, None when
        Redis did not answer (nothing counted there)."""
        if asyncio.get_running_loop().time() < self._skip_until:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                count = await self._admit(
                    keys=[self.prefix + str(player_id)],
                    args=[self.worker, self.cap, WORKER_PREFIX, self.hash_ttl],
                )
        except Exception as exc:
            self._failed(exc, "not counted")
            return None
        if int(count) < 0:
            return False
        self.mine[player_id] = self.mine.get(player_id, 0) + 1
        return True

    async def totals(self, ids: list[uuid.UUID]) -> list[int] | None:
        """Return each id's open streams across living workers, or None when Redis did not answer."""
        if not ids:
            return []
        try:
            async with asyncio.timeout(self.timeout):
                counts = await self._totals(keys=[self.prefix + str(i) for i in ids], args=[WORKER_PREFIX])
        except Exception as exc:
            log.warning("stream counts: not read (%s)", type(exc).__name__)
            return None
        return [int(c) for c in counts]

    def give_back(self, player_id: uuid.UUID) -> None:
        """Forget one stream of the player counted by `take` (never waits)."""
        left = self.mine.get(player_id, 0) - 1
        if left > 0:
            self.mine[player_id] = left
        else:
            self.mine.pop(player_id, None)
        if asyncio.get_running_loop().time() < self._skip_until:
            self._dirty.add(player_id)
            return
        task = asyncio.get_running_loop().create_task(self._give_back(player_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _give_back(self, player_id: uuid.UUID) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._release(keys=[self.prefix + str(player_id)], args=[self.worker])
        except Exception as exc:
            self._failed(exc, "not given back")
            self._dirty.add(player_id)  # set right from `mine` when Redis answers again

    async def stop(self) -> None:
        """Give back what is due; this worker's counts stop counting at once."""
        if self._alive is not None:
            self._alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._alive
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self.timeout * 2)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await self._redis.delete(WORKER_PREFIX + self.worker)
        await self._redis.aclose()
