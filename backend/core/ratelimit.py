"""Rate limits: a token bucket per limit and key, `rate` per second on average, bursts up to `burst`.

Kept as GCRA (the generic cell rate algorithm: one number per key, the time at which its
bucket is full again), so one decision is one read and one write. Two places hold them:

- Redis, when `REDIS_URL` is set: one Lua script, atomic, on Redis's clock, so every worker
  of every host shares one allowance. One round trip per decision at most: the decisions
  asked for meanwhile share the next one.
- this process, otherwise, and whenever Redis fails or is slow: a command never fails
  because Redis is gone; it is limited by this process alone until Redis answers again.

`limits` (the ecosystem's package) was weighed: its strategies count hits in windows of an
integer amount per period, which cannot say "5 a second, bursts of 10" as the chat setting
does, and a refusal's wait (`Retry-After`) costs a second round trip there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from backend.core.config import Settings
from backend.core.problems import RateLimited

log = logging.getLogger(__name__)

MICROS = 1_000_000
KEY_PREFIX = "roundtable:limit:"

REFUSED = Counter("roundtable_rate_limited", "Requests refused for going over a rate limit.", ["limit"])
FALLBACKS = Counter(
    "roundtable_rate_limit_fallbacks",
    "Rate-limit decisions taken by this process alone because Redis failed or was slow.",
)


@dataclass(frozen=True)
class Limit:
    """One kind of limit: `per_second` on average, up to `burst` at once."""

    name: str
    per_second: float
    burst: int
    # What the caller did too often, for the problem's detail ("Too many messages").
    refusal: str
    # The time one unit of the allowance takes to come back, in whole microseconds (so both
    # places compute with exact integers).
    interval_us: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval_us", max(1, round(MICROS / self.per_second)))


def gcra(full_at: int | None, now: int, limit: Limit) -> tuple[int, int]:
    """Decide on one request; return (the bucket's new full-at time, 0) when it may go, else
    (unchanged, microseconds until it may). Times in microseconds."""
    tat = now if full_at is None or full_at < now else full_at
    wait = tat + limit.interval_us - limit.burst * limit.interval_us - now
    if wait > 0:
        return tat, wait
    return tat + limit.interval_us, 0


# The same decision as `gcra`, in Redis, for several buckets at once (in order, so a key
# twice is decided twice): KEYS the buckets, ARGV an interval_us and a burst per key.
# Returns per key 0 when allowed, else the microseconds to wait. Integers below 2^53 stay exact.
GCRA_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local waits = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = now
  local stored = redis.call('GET', key)
  if stored then
    tat = math.max(tonumber(stored), now)
  end
  local wait = tat + interval - burst * interval - now
  if wait > 0 then
    waits[i] = wait
  else
    tat = tat + interval
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
    waits[i] = 0
  end
end
return waits
"""


class Limiter(Protocol):
    """Where the buckets are kept."""

    async def take(self, limit: Limit, key: str) -> float:
        """Take one unit of `key`'s allowance; return 0 when allowed, else the seconds to wait."""
        ...

    async def close(self) -> None:
        """Let go of any connection."""
        ...


class LocalLimiter:
    """The buckets of this process."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._full_at: dict[tuple[str, str], int] = {}

    def take_now(self, limit: Limit, key: str) -> float:
        """As `take`, without waiting for anything."""
        now = time.monotonic_ns() // 1000
        bucket = (limit.name, key)
        full_at, wait = gcra(self._full_at.get(bucket), now, limit)
        if wait:
            return wait / MICROS
        if bucket not in self._full_at and len(self._full_at) >= self.size:
            self._forget_full(now)
        self._full_at[bucket] = full_at
        return 0.0

    def _forget_full(self, now: int) -> None:
        # A full bucket is the same as none. Bounded: when everything is in use, forget it all.
        self._full_at = {bucket: at for bucket, at in self._full_at.items() if at > now}
        if len(self._full_at) >= self.size:
            self._full_at.clear()

    async def take(self, limit: Limit, key: str) -> float:
        """Take one unit of `key`'s allowance; return 0 when allowed, else the seconds to wait."""
        return self.take_now(limit, key)

    async def close(self) -> None:
        """Nothing to close."""


Request = tuple[Limit, str, "asyncio.Future[float]"]


class RedisLimiter:
    """The buckets in Redis, shared by every worker; this process's own while Redis fails.

    The decisions asked for while one round trip is under way go together in the next, as
    one script call: one round trip per decision at most, and far fewer under load (a call
    costs the client much more than a key in it).
    """

    def __init__(self, url: str, timeout: float, retry_seconds: float) -> None:
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        # No retries of its own: a failure falls back at once.
        self._redis = Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._script = self._redis.register_script(GCRA_SCRIPT)
        self.local = LocalLimiter()
        self._down = False
        self._retry_at = 0.0
        self._pending: list[Request] = []
        self._sender: asyncio.Task[None] | None = None

    async def take(self, limit: Limit, key: str) -> float:
        """Take one unit of `key`'s allowance; return 0 when allowed, else the seconds to wait."""
        # While Redis is away, one round trip at a time looks whether it is back.
        if self._down and (self._sender is not None or time.monotonic() < self._retry_at):
            FALLBACKS.inc()
            return self.local.take_now(limit, key)
        decided: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pending.append((limit, key, decided))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_pending(), name="rate-limits")
        return await decided

    async def _send_pending(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                for (_, _, decided), wait in zip(batch, await self._decide(batch), strict=True):
                    if not decided.done():
                        decided.set_result(wait)
        finally:
            self._sender = None

    async def _decide(self, batch: list[Request]) -> list[float]:
        if self._down and time.monotonic() < self._retry_at:
            # Asked while the round trip that found Redis away was under way.
            FALLBACKS.inc(len(batch))
            return [self.local.take_now(limit, key) for limit, key, _ in batch]
        keys = [KEY_PREFIX + limit.name + ":" + key for limit, key, _ in batch]
        args = [n for limit, _, _ in batch for n in (limit.interval_us, limit.burst)]
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._script(keys=keys, args=args)
            waits = [int(wait) / MICROS for wait in answer]
            if len(waits) != len(batch):
                raise ValueError(f"{len(waits)} decisions for {len(batch)} requests")
        except Exception as exc:
            if not self._down:
                log.warning(
                    "Redis rate limits unavailable (%s); each worker limits on its own meanwhile",
                    type(exc).__name__,
                )
            self._down = True
            self._retry_at = time.monotonic() + self.retry_seconds
            FALLBACKS.inc(len(batch))
            return [self.local.take_now(limit, key) for limit, key, _ in batch]
        if self._down:
            self._down = False
            log.info("Redis rate limits available again")
        return waits

    async def close(self) -> None:
        """Decide what is asked, then close the connections."""
        if self._sender is not None:
            await asyncio.wait({self._sender})
        await self._redis.aclose()


class RateLimits:
    """Every limit of the service, and where its buckets are kept."""

    def __init__(self, settings: Settings) -> None:
        self.rooms = Limit(
            "rooms",
            settings.rooms_per_minute / 60,
            settings.rooms_burst,
            "Too many rooms created from this address",
        )
        self.joins = Limit(
            "joins", settings.joins_per_minute / 60, settings.joins_burst, "Too many joins from this address"
        )
        self.commands = Limit(
            "commands", settings.commands_per_second, settings.commands_burst, "Too many commands"
        )
        self.chat = Limit("chat", settings.chat_per_second, settings.chat_burst, "Too many messages")
        self.limiter: Limiter = (
            RedisLimiter(
                settings.redis_url, settings.rate_limit_redis_timeout, settings.rate_limit_retry_seconds
            )
            if settings.redis_url
            else LocalLimiter()
        )

    async def check(self, limit: Limit, key: object) -> None:
        """Count a request of `key` against `limit`, or refuse it (429 `rate_limited`)."""
        wait = await self.limiter.take(limit, str(key))
        if wait > 0:
            REFUSED.labels(limit.name).inc()
            raise RateLimited(wait, limit.refusal)

    async def close(self) -> None:
        """Let go of Redis."""
        await self.limiter.close()
