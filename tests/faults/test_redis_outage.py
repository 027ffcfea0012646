"""Redis killed for 10 s under a server with two workers: streams on both workers get every
event (from PostgreSQL, by the catch-up timer, while Redis is away), and /readyz stays 200,
reporting Redis as degraded, as /metrics does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg
import httpx

from tests.faults.load import SseClient
from tests.support import RedisServer, Server, check_envelope, metric, sse_events, wait_for

OUTAGE_SECONDS = 10.0


async def follow(http: httpx.AsyncClient, base: str, room_id: str, client: SseClient) -> None:
    """Read `client`'s stream, resuming after the last event it has if the stream ends."""
    while True:
        headers = {"Authorization": f"Bearer {client.token}"}
        if client.last is not None:
            headers["Last-Event-ID"] = str(client.last)
        async with http.stream(
            "GET", f"{base}/v1/rooms/{room_id}/events", headers=headers, timeout=30
        ) as response:
            assert response.status_code == 200, await response.aread()
            client.opened += 1
            async for event in sse_events(response):
                payload = check_envelope(event)
                if payload["type"] == "snapshot":
                    client.snapshot_seq = payload["data"]["last_seq"]
                else:
                    client.seqs.append(payload["seq"])


async def stream_workers(database_url: str, room_id: str) -> dict[str, Any]:
    """Which worker holds each player's stream (their presence leases)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT player_id, worker_id FROM stream_leases WHERE room_id = $1::uuid", room_id
        )
        return {str(row["player_id"]): row["worker_id"] for row in rows}
    finally:
        await conn.close()


async def test_redis_killed_for_10s_with_two_workers_every_event_is_delivered_and_readyz_stays_200(
    own_database_url: str, own_redis: RedisServer, server: Server
) -> None:
    base = server.url
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        body = {"name": "Outage", "nickname": "Host", "ruleset": "mafia", "settings": {"max_players": 20}}
        host = (await http.post("/v1/rooms", json=body)).json()
        room_id = host["room"]["id"]
        say = {"Authorization": f"Bearer {host['token']}"}

        async def chat(text: str) -> int:
            answer = await http.post(f"/v1/rooms/{room_id}/messages", json={"text": text}, headers=say)
            assert answer.status_code == 201, answer.text
            seq: int = answer.json()["seq"]
            return seq

        # Streams (one TCP connection each) until both workers hold some of them.
        clients: list[SseClient] = []
        readers: list[asyncio.Task[None]] = []
        workers: dict[str, Any] = {}
        while len(set(workers.values())) < 2:
            assert len(clients) < 19, "every stream landed on one worker"
            for _ in range(4):
                joined = await http.post(
                    f"/v1/rooms/{room_id}/players", json={"nickname": f"Reader {len(clients)}"}
                )
                assert joined.status_code == 201, joined.text
                session = joined.json()
                clients.append(SseClient(session["player"]["id"], session["token"], None))
                readers.append(asyncio.create_task(follow(http, base, room_id, clients[-1])))
            await wait_for(lambda: all(c.snapshot_seq is not None for c in clients), within=20)
            ids = {c.name for c in clients}  # player ids
            for _ in range(200):  # their presence leases name the worker of each stream
                workers = await stream_workers(own_database_url, room_id)
                if ids <= workers.keys():
                    break
                await asyncio.sleep(0.05)

        # Readiness and the Redis gauge, asked of whichever worker answers, throughout.
        readiness: list[tuple[int, dict[str, Any]]] = []
        stopping = asyncio.Event()

        async def probe() -> None:
            while not stopping.is_set():
                async with httpx.AsyncClient(base_url=base, timeout=10) as fresh:  # any worker
                    ready = await fresh.get("/readyz")
                readiness.append((ready.status_code, ready.json()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 0.05)

        prober = asyncio.create_task(probe())

        async def redis_up_gauge_becomes(value: float) -> None:
            for _ in range(200):
                async with httpx.AsyncClient(base_url=base, timeout=10) as fresh:  # any worker
                    if metric((await fresh.get("/metrics")).text, "roundtable_redis_up") == value:
                        return
                await asyncio.sleep(0.05)
            raise AssertionError(f"roundtable_redis_up never read {value}")

        try:
            await redis_up_gauge_becomes(1)
            await chat("before")
            own_redis.stop()
            killed = time.monotonic()
            # Commands succeed, and every stream on either worker gets them meanwhile.
            last = 0
            for n in range(20):
                last = await chat(f"during {n}")
            await wait_for(lambda: all((c.last or 0) >= last for c in clients), within=OUTAGE_SECONDS - 1)
            await wait_for(
                lambda: any(status == 200 and b["degraded"] == ["redis"] for status, b in readiness)
            )
            await redis_up_gauge_becomes(0)
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - killed)))  # the outage
            own_redis.start()
            await wait_for(lambda: readiness[-1][1]["degraded"] == [], within=10)
            await redis_up_gauge_becomes(1)
            end = await chat("END")
            await wait_for(lambda: all((c.last or 0) >= end for c in clients), within=10)
        finally:
            stopping.set()
            await prober
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    assert readiness
    assert all(status == 200 for status, _ in readiness), [r for r in readiness if r[0] != 200]
    assert all(b["checks"]["postgres"] == "ok" for _, b in readiness)
    for client in clients:
        assert client.snapshot_seq is not None
        assert client.seqs, client.name
        assert client.seqs[-1] >= end, client.name
        assert client.seqs == list(range(client.snapshot_seq + 1, client.seqs[-1] + 1)), client.name
    log = server.log.read_text()
    assert "Traceback" not in log, log
