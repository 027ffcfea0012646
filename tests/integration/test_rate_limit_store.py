"""Where the rate limits' buckets are kept: Redis (shared by every worker) or this process.

The same decisions either way; when Redis is frozen or gone each decision still comes at
once, from this process, and from Redis again once it is back.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from redis.asyncio import Redis

from backend.core.ratelimit import KEY_PREFIX, Limit, Limiter, LocalLimiter, RedisLimiter
from tests.support import redis_server

ONE_A_MINUTE = Limit("test", 1 / 60, 3, "Too many tests")


@pytest.mark.parametrize("where", ["process", "redis"])
async def test_a_bucket_lets_its_burst_through_then_says_how_long_to_wait(where: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        if where == "process":
            limiter: Limiter = LocalLimiter()
        else:
            limiter = RedisLimiter(stack.enter_context(redis_server(tmp_path)).url, 1.0, 0.2)
        try:
            key = str(uuid.uuid4())
            assert [await limiter.take(ONE_A_MINUTE, key) for _ in range(3)] == [0, 0, 0]
            wait = await limiter.take(ONE_A_MINUTE, key)
            assert 59 < wait <= 60
            assert await limiter.take(ONE_A_MINUTE, str(uuid.uuid4())) == 0  # another key, its own bucket
        finally:
            await limiter.close()


async def test_without_redis_decisions_come_at_once_from_the_process_and_from_redis_once_it_is_back(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path) as redis:
        limiter = RedisLimiter(redis.url, 0.3, 0.2)
        try:
            spent = str(uuid.uuid4())
            for _ in range(3):
                await limiter.take(ONE_A_MINUTE, spent)
            assert await limiter.take(ONE_A_MINUTE, spent) > 0

            # Frozen: each decision within the timeout, from this process (a fresh bucket here).
            assert redis.process is not None
            redis.process.send_signal(signal.SIGSTOP)
            try:
                began = time.monotonic()
                assert await limiter.take(ONE_A_MINUTE, spent) == 0
                assert await limiter.take(ONE_A_MINUTE, spent) == 0
                assert time.monotonic() - began < 1.0
            finally:
                redis.process.send_signal(signal.SIGCONT)

            # Gone: the same, at once.
            redis.stop()
            began = time.monotonic()
            assert await limiter.take(ONE_A_MINUTE, spent) == 0
            assert await limiter.take(ONE_A_MINUTE, spent) > 0  # this process's bucket holds too
            assert time.monotonic() - began < 0.5

            # Back (empty): the shared buckets decide again once the retry interval has passed.
            redis.start()
            direct = Redis.from_url(redis.url)
            try:
                deadline = time.monotonic() + 2
                while True:
                    key = str(uuid.uuid4())
                    assert await limiter.take(ONE_A_MINUTE, key) == 0
                    if await direct.exists(KEY_PREFIX + f"test:{key}"):
                        break
                    assert time.monotonic() < deadline, "Redis not used again"
                    await asyncio.sleep(0.05)
            finally:
                await direct.aclose()
        finally:
            await limiter.close()


@pytest.mark.parametrize("where", ["process", "redis"])
async def test_decisions_asked_at_once_each_count(where: str, tmp_path: Path) -> None:
    """Many commands at the same moment (Redis decides them in one round trip): the burst and
    not one more, on one key, while other keys keep their own."""
    with ExitStack() as stack:
        if where == "process":
            limiter: Limiter = LocalLimiter()
        else:
            limiter = RedisLimiter(stack.enter_context(redis_server(tmp_path)).url, 1.0, 0.2)
        try:
            busy, others = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(10)]
            waits = await asyncio.gather(
                *(limiter.take(ONE_A_MINUTE, busy) for _ in range(10)),
                *(limiter.take(ONE_A_MINUTE, key) for key in others),
            )
            assert [wait == 0 for wait in waits[:10]].count(True) == 3
            assert all(wait == 0 for wait in waits[10:])
        finally:
            await limiter.close()


async def test_decisions_waiting_behind_a_frozen_redis_wait_for_one_timeout_only(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        limiter = RedisLimiter(redis.url, 0.5, 5.0)
        try:
            await limiter.take(ONE_A_MINUTE, "warm")  # connected
            assert redis.process is not None
            redis.process.send_signal(signal.SIGSTOP)
            try:
                began = time.monotonic()
                first = asyncio.ensure_future(limiter.take(ONE_A_MINUTE, str(uuid.uuid4())))
                await asyncio.sleep(0)  # its round trip is under way; the rest queue behind it
                rest = [limiter.take(ONE_A_MINUTE, str(uuid.uuid4())) for _ in range(5)]
                assert await asyncio.gather(first, *rest) == [0] * 6
                assert time.monotonic() - began < 0.9  # one timeout (0.5 s), not two
            finally:
                redis.process.send_signal(signal.SIGCONT)
        finally:
            await limiter.close()
