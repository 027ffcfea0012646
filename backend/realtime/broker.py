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

    def publish(self, room_id: uuid.UUID, seq: int) -> None:
        """Ring the doorbell of every worker, this one's at once; never waits, never raises."""
        ...


class InMemoryBroker:
    """The doorbell of a single process: straight to its own hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""

    def publish(self, room_id: uuid.UUID, seq: int) -> None:
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
        # Doorbells not yet sent, newest seq per room, and the task sending them.
        self._unsent: dict[uuid.UUID, int] = {}
        self._sender: asyncio.Task[None] | None = None
        # Whether Redis answers: the subscription is live and the last publish went through.
        self._subscribed = False
        self._published = True
        self._report()

    def _report(self) -> None:
        metrics.REDIS_UP.up = self._subscribed and self._published

    async def start(self) -> None:
        """Start the supervised subscription."""
        self._listener = asyncio.create_task(self._listen_forever(), name="redis-doorbells")

    async def stop(self) -> None:
        """Send what is due, stop listening and close the connections."""
        if self._sender:
            with contextlib.suppress(Exception):
                await self._sender
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()

    def publish(self, room_id: uuid.UUID, seq: int) -> None:
        """Ring this process's hub, and every other worker's soon after.

        The command does not wait for Redis (its events are committed; a doorbell may be
        lost anyway). The doorbells of every command that commits meanwhile go out together,
        the newest seq per room, as one message: one publish per round trip to Redis rather
        than one per command, and one message for each worker to read.
        """
        self.hub.doorbell(room_id, seq)
        if seq > self._unsent.get(room_id, 0):
            self._unsent[room_id] = seq
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_unsent(), name="redis-publish")

    async def _send_unsent(self) -> None:
        try:
            while self._unsent:
                unsent, self._unsent = self._unsent, {}
                message = "\n".join(f"{room} {seq}" for room, seq in unsent.items())
                try:
                    async with asyncio.timeout(self.publish_timeout):
                        await self._redis.publish(CHANNEL, message)
                    self._published = True
                    self._report()
                except Exception as exc:
                    self._published = False
                    self._report()
                    metrics.PUBLISH_FAILURES.inc(len(unsent))
                    log.warning(
                        "%d doorbell(s) not published (%s); other workers catch up by timer",
                        len(unsent),
                        type(exc).__name__,
                    )
        finally:
            self._sender = None

    async def _listen_forever(self) -> None:
        delay = 0.2
        while True:
            client = Redis.from_url(self.url, socket_connect_timeout=1, health_check_interval=5)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self._subscribed = self._published = True
                self._report()
                delay = 0.2
                log.info("subscribed to Redis doorbells")
                # Doorbells rung while we were away are lost; look at every room now.
                await self.hub.catch_up()
                while True:
                    # Idle reads also run the connection's health check, so a dead Redis is noticed.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message["type"] != "message":
                        continue
                    for line in message["data"].decode().splitlines():  # "room seq" each
                        room, _, seq = line.partition(" ")
                        self.hub.doorbell(uuid.UUID(room), int(seq), source="redis")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed = False
                self._report()
                log.warning("Redis doorbells lost (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
