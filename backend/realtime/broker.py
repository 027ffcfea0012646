"""Doorbells: after a commit, tell every worker that a room's log reached a seq.

PostgreSQL holds the events; a doorbell only says where to look, and may be lost (the
hub's catch-up timer makes up for it). One process: the in-memory broker. Several: Redis
pub/sub, one subscription per process, supervised so it comes back after Redis does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Protocol

from redis.asyncio import Redis

from backend.realtime import metrics
from backend.realtime.hub import Hub

log = logging.getLogger(__name__)

CHANNEL = "roundtable:doorbell"


class Broker(Protocol):
    """Rings doorbells for the hubs of every worker."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, room_id: uuid.UUID, seq: int) -> None: ...


class InMemoryBroker:
    """The doorbell of a single process: straight to its own hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def publish(self, room_id: uuid.UUID, seq: int) -> None:
        """Ring this process's hub."""
        self.hub.doorbell(room_id, seq)


class RedisBroker:
    """Doorbells over Redis pub/sub; this process's own hub is rung directly as well."""

    def __init__(self, hub: Hub, url: str, publish_timeout: float = 0.5) -> None:
        self.hub = hub
        self.url = url
        self.publish_timeout = publish_timeout
        self._redis = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=publish_timeout)
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the supervised subscription."""
        self._listener = asyncio.create_task(self._listen_forever(), name="redis-doorbells")

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()

    async def publish(self, room_id: uuid.UUID, seq: int) -> None:
        """Ring every worker; a failure is logged, never raised: the command has committed."""
        self.hub.doorbell(room_id, seq)
        try:
            async with asyncio.timeout(self.publish_timeout):
                await self._redis.publish(CHANNEL, f"{room_id} {seq}")
        except Exception as exc:
            metrics.PUBLISH_FAILURES.inc()
            log.warning("doorbell not published (%s); other workers catch up by timer", type(exc).__name__)

    async def _listen_forever(self) -> None:
        delay = 0.2
        while True:
            client = Redis.from_url(self.url, socket_connect_timeout=1, health_check_interval=5)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                delay = 0.2
                log.info("subscribed to Redis doorbells")
                # Doorbells rung while we were away are lost; look at every room now.
                await self.hub.catch_up()
                while True:
                    # Idle reads also run the connection's health check, so a dead Redis is noticed.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message["type"] != "message":
                        continue
                    room, _, seq = message["data"].decode().partition(" ")
                    self.hub.doorbell(uuid.UUID(room), int(seq), source="redis")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Redis doorbells lost (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
