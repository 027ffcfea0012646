"""Rate limits: rooms created and joins per client address, commands and chat per player.

Over a limit: a 429 `rate_limited` problem with `Retry-After` (a WebSocket command: an
`error` with that code), and nothing written. With `WORKERS=2` the workers share one
allowance through Redis; when Redis goes away, commands still succeed, limited by each
process alone.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from backend.app import create_app
from backend.core.config import Settings
from tests.game_support import Seat, new_room, start
from tests.integration.test_game import by_role, log_of
from tests.integration.test_lobby import assert_problem
from tests.support import RedisServer, redis_server, serve

# Small limits: bursts of 3, then one a minute (rooms, joins per address) or one each 100 s
# (commands per player).
BURST = 3
TIGHT = Settings(
    rooms_per_minute=1,
    rooms_burst=BURST,
    joins_per_minute=1,
    joins_burst=BURST,
    commands_per_second=0.01,
    commands_burst=BURST,
)
NIGHT_GAME: dict[str, Any] = {"roles": {"mafia": 1, "doctor": 1, "detective": 0}, "night_seconds": 3600}


@pytest.fixture(scope="module")
async def tight_app(database_url: str) -> AsyncIterator[FastAPI]:
    """The app with small limits, started against the test database."""
    app = create_app(TIGHT, database_url=database_url)
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def client_at(app: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the in-process app whose requests come from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://roundtable.test") as client:
        yield client


def assert_rate_limited(response: httpx.Response, at_least: int, at_most: int) -> None:
    """Assert a 429 `rate_limited` problem whose Retry-After lies in [at_least, at_most] seconds."""
    assert_problem(response, 429, "rate_limited")
    assert at_least <= int(response.headers["retry-after"]) <= at_most, response.headers


def create_body(nickname: str = "Host") -> dict[str, Any]:
    return {"name": "Limits", "nickname": nickname, "ruleset": "mafia"}


async def test_rooms_created_from_one_address_are_limited_and_other_addresses_are_not(
    tight_app: FastAPI,
) -> None:
    async with client_at(tight_app, "10.0.1.1") as busy, client_at(tight_app, "10.0.1.2") as other:
        for _ in range(BURST):
            assert (await busy.post("/v1/rooms", json=create_body())).status_code == 201
        refused = await busy.post("/v1/rooms", json=create_body())
        # One room a minute comes back: the next in about a minute.
        assert_rate_limited(refused, 50, 60)
        assert "rooms created" in refused.json()["detail"]
        assert (await other.post("/v1/rooms", json=create_body())).status_code == 201


async def test_joins_from_one_address_are_limited_and_other_addresses_are_not(tight_app: FastAPI) -> None:
    async with (
        client_at(tight_app, "10.0.2.1") as host,
        client_at(tight_app, "10.0.2.2") as busy,
        client_at(tight_app, "10.0.2.3") as other,
    ):
        room = (await host.post("/v1/rooms", json={**create_body(), "settings": {"max_players": 10}})).json()
        players = f"/v1/rooms/{room['room']['id']}/players"
        for i in range(BURST):
            assert (await busy.post(players, json={"nickname": f"Busy{i}"})).status_code == 201
        refused = await busy.post(players, json={"nickname": "OneTooMany"})
        assert_rate_limited(refused, 50, 60)
        assert (await other.post(players, json={"nickname": "Other"})).status_code == 201
        listed = (await host.get(f"/v1/rooms/{room['room']['id']}")).json()
        assert listed["player_count"] == 1 + BURST + 1  # the refused join wrote nothing


async def test_quick_joins_count_as_joins_of_their_address(tight_app: FastAPI) -> None:
    """A quick join is a join: it spends the address's joins, and a plain join after them too."""
    async with client_at(tight_app, "10.0.2.4") as busy, client_at(tight_app, "10.0.2.5") as other:
        for i in range(BURST):
            joined = await busy.post("/v1/quick-join", json={"ruleset": "missions", "nickname": f"Quick{i}"})
            assert joined.status_code == 201, joined.text
        room_id = joined.json()["room"]["id"]
        assert_rate_limited(
            await busy.post("/v1/quick-join", json={"ruleset": "missions", "nickname": "More"}), 50, 60
        )
        assert_rate_limited(
            await busy.post(f"/v1/rooms/{room_id}/players", json={"nickname": "Plain"}), 50, 60
        )
        assert (
            await other.post("/v1/quick-join", json={"ruleset": "missions", "nickname": "Other"})
        ).status_code == 201


async def test_watching_a_room_draws_on_the_addresss_joins(tight_app: FastAPI, database_url: str) -> None:
    """A spectator's token is a join's worth of work: one address cannot mint them without end."""
    async with (
        client_at(tight_app, "10.0.2.7") as host,
        client_at(tight_app, "10.0.2.8") as busy,
        client_at(tight_app, "10.0.2.9") as other,
    ):
        room = (await host.post("/v1/rooms", json={**create_body(), "settings": {"max_players": 10}})).json()
        room_id = room["room"]["id"]
        watch, players = f"/v1/rooms/{room_id}/spectators", f"/v1/rooms/{room_id}/players"
        for _ in range(BURST - 1):
            assert (await busy.post(watch, json={})).status_code == 201
        assert (await busy.post(players, json={"nickname": "Busy"})).status_code == 201
        assert_rate_limited(await busy.post(watch, json={}), 50, 60)
        assert_rate_limited(await busy.post(players, json={"nickname": "Later"}), 50, 60)
        assert (await other.post(watch, json={})).status_code == 201
    conn = await asyncpg.connect(database_url)
    try:
        watching = await conn.fetchval(
            "SELECT count(*) FROM spectators WHERE room_id = $1", uuid.UUID(room_id)
        )
    finally:
        await conn.close()
    assert watching == BURST - 1 + 1  # the refused one wrote nothing


async def test_a_player_changing_their_vote_again_and_again_is_limited_and_nobody_else_is(
    tight_app: FastAPI,
) -> None:
    async with client_at(tight_app, "10.0.3.1") as client:
        room_id, seats = await new_room(client, 4, **NIGHT_GAME)
        await start(client, room_id, seats)
        (doctor,) = by_role(seats, "doctor")
        (mafioso,) = by_role(seats, "mafia")
        votes = f"/v1/rooms/{room_id}/votes"
        before = len(await log_of(tight_app, room_id))
        allowance = BURST - (doctor is seats[0])  # the host's start was a command
        for target in [s.id for s in seats][:allowance]:
            cast = await client.post(votes, headers=doctor.auth, json={"target_player_id": target})
            assert cast.status_code == 201, cast.text
        refused = await client.post(votes, headers=doctor.auth, json={"target_player_id": doctor.id})
        # One command each 100 s comes back.
        assert_rate_limited(refused, 90, 100)
        # Nothing written, nothing broadcast: only the accepted votes are in the log.
        assert len(await log_of(tight_app, room_id)) == before + allowance
        # Reading is not a command; another player's allowance is their own.
        assert (await client.get(f"/v1/rooms/{room_id}/state", headers=doctor.auth)).status_code == 200
        victim = next(s for s in seats if s.role != "mafia")
        kill = await client.post(votes, headers=mafioso.auth, json={"target_player_id": victim.id})
        assert kill.status_code == 201, kill.text


async def test_every_command_draws_on_the_players_one_allowance(tight_app: FastAPI) -> None:
    async with client_at(tight_app, "10.0.4.1") as client:
        room_id, seats = await new_room(client, 3)
        host, guest, leaver = seats
        room = f"/v1/rooms/{room_id}"
        # Change the room, kick, then start: three different commands, one allowance.
        assert (await client.patch(room, headers=host.auth, json={"name": "Renamed"})).status_code == 200
        kicked = await client.delete(f"{room}/players/{leaver.id}", headers=host.auth)
        assert kicked.status_code == 204
        assert (await client.patch(room, headers=host.auth, json={"name": "Again"})).status_code == 200
        for refused in (
            await client.post(f"{room}/start", headers=host.auth),
            await client.post(f"{room}/advance", headers=host.auth, json={}),
            await client.patch(room, headers=host.auth, json={"name": "Once more"}),
            await client.delete(f"{room}/players/{guest.id}", headers=host.auth),
        ):
            assert_rate_limited(refused, 90, 100)
        # The guest's own command (leaving) is theirs to make.
        assert (await client.delete(f"{room}/players/{guest.id}", headers=guest.auth)).status_code == 204
        names = [
            e["data"]["room"]["name"] for e in await log_of(tight_app, room_id) if e["type"] == "room.updated"
        ]
        assert "Once more" not in names


# --- Two workers, one allowance ---------------------------------------------------------------

WORKERS_ENV = {
    "WORKERS": "2",
    "ROOMS_PER_MINUTE": "1",
    "ROOMS_BURST": "4",
    "JOINS_PER_MINUTE": "60",
    "JOINS_BURST": "30",
    "COMMANDS_PER_SECOND": "0.01",
    "COMMANDS_BURST": "6",
    "CHAT_PER_SECOND": "0.01",
    "CHAT_BURST": "6",
    "RATE_LIMIT_RETRY_SECONDS": "0.5",
}


@pytest.fixture(scope="module")
def two_workers(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RedisServer]]:
    """`python -m backend serve` with WORKERS=2 and a Redis of the test's own; yield the URL and Redis."""
    workdir = tmp_path_factory.mktemp("two-workers")
    log = workdir / "server.log"
    with (
        redis_server(workdir) as redis,
        serve(database_url, log, {**WORKERS_ENV, "REDIS_URL": redis.url}) as server,
    ):
        yield server.url, redis
    assert "Traceback" not in log.read_text(), log.read_text()


async def fresh_connection_post(url: str, path: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    """POST on a connection of its own (so the kernel may hand it to either worker)."""
    transport = httpx.AsyncHTTPTransport(**kwargs)
    async with httpx.AsyncClient(transport=transport, base_url=url) as client:
        return await client.post(path, json=body)


async def test_rooms_created_from_one_address_share_one_allowance_across_workers(
    two_workers: tuple[str, RedisServer],
) -> None:
    url, _ = two_workers
    burst = int(WORKERS_ENV["ROOMS_BURST"])
    answers = [
        (await fresh_connection_post(url, "/v1/rooms", create_body(), local_address="127.0.0.2")).status_code
        for _ in range(3 * burst)
    ]
    assert answers.count(201) == burst, answers
    refused = await fresh_connection_post(url, "/v1/rooms", create_body(), local_address="127.0.0.2")
    assert_rate_limited(refused, 50, 60)
    # Another address has its own allowance.
    other = await fresh_connection_post(url, "/v1/rooms", create_body(), local_address="127.0.0.3")
    assert other.status_code == 201


async def workers_streaming_to(database_url: str, player_id: str) -> int:
    """Return how many server processes hold a stream of the player open."""
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(DISTINCT worker_id) FROM stream_leases WHERE player_id = $1", uuid.UUID(player_id)
        )
        return count
    finally:
        await conn.close()


async def socket_on_each_worker(
    url: str, database_url: str, room_id: str, seat: Seat
) -> list[ClientConnection]:
    """Open the player's WebSocket until one is served by each of the two workers (told apart by
    their stream leases in PostgreSQL); return one socket per worker."""
    ws_url = f"{url.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws"
    headers = {"Authorization": f"Bearer {seat.token}"}
    first = await ws_connect(ws_url, additional_headers=headers)
    await first.recv()  # the snapshot: this worker holds its lease by now
    assert await workers_streaming_to(database_url, seat.id) == 1
    for _ in range(100):
        other = await ws_connect(ws_url, additional_headers=headers)
        await other.recv()
        if await workers_streaming_to(database_url, seat.id) == 2:
            return [first, other]
        await other.close()  # the same worker as `first`
    raise AssertionError("every connection went to the same worker")


async def command(socket: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send a command; return its ack or error (skipping the events in between)."""
    request_id = str(uuid.uuid4())
    await socket.send(json.dumps({**message, "request_id": request_id}))
    while True:
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if reply.get("request_id") == request_id and reply["type"] in ("ack", "error"):
            return reply


async def replies_alternating(
    sockets: list[ClientConnection], message: dict[str, Any], times: int
) -> list[str]:
    """Send `message` `times` times, alternating between the sockets; return each reply's kind."""
    replies = [await command(sockets[i % 2], message) for i in range(times)]
    return [r["type"] if r["type"] == "ack" else r["code"] for r in replies]


async def test_two_workers_share_one_allowance_for_chat_and_votes(
    two_workers: tuple[str, RedisServer], database_url: str
) -> None:
    url, _ = two_workers
    async with httpx.AsyncClient(base_url=url) as client:
        room_id, seats = await new_room(client, 4, **NIGHT_GAME)
        await start(client, room_id, seats)
        # The mafioso talks (to the mafia) and votes at night; the night stays open until the
        # doctor votes too, which they never do here.
        (mafioso,) = by_role(seats, "mafia")
        victim = next(s for s in seats if s.role != "mafia")
        sockets = await socket_on_each_worker(url, database_url, room_id, mafioso)
        try:
            chat_burst = int(WORKERS_ENV["CHAT_BURST"])
            # Alternating between the workers: one burst in all, not one per worker.
            said = await replies_alternating(sockets, {"type": "chat", "text": "hi"}, 2 * chat_burst)
            assert said == ["ack"] * chat_burst + ["rate_limited"] * chat_burst, said
            # Over HTTP, whichever worker answers: the same spent allowance.
            over_http = await client.post(
                f"/v1/rooms/{room_id}/messages", headers=mafioso.auth, json={"text": "x"}
            )
            assert_rate_limited(over_http, 90, 100)

            allowance = int(WORKERS_ENV["COMMANDS_BURST"]) - (mafioso is seats[0])  # the start counted
            kill = {"type": "vote", "target_player_id": victim.id}
            voted = await replies_alternating(sockets, kill, 2 * allowance)
            assert voted == ["ack"] * allowance + ["rate_limited"] * allowance, voted
            over_http = await client.post(
                f"/v1/rooms/{room_id}/votes", headers=mafioso.auth, json={"target_player_id": victim.id}
            )
            assert_rate_limited(over_http, 90, 100)
        finally:
            for socket in sockets:
                await socket.close()


async def evalsha_calls(redis: Redis) -> int:
    """Return how many scripts Redis has run (each rate-limit decision taken there is one)."""
    stats: dict[str, Any] = await redis.info("commandstats")
    calls: int = stats.get("cmdstat_evalsha", {}).get("calls", 0)
    return calls


async def until_decided_in_redis(redis: Redis, socket: ClientConnection) -> None:
    """Send chat commands on `socket` until its worker takes the decision in Redis again."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        before = await evalsha_calls(redis)
        await command(socket, {"type": "chat", "text": "probe"})
        if await evalsha_calls(redis) > before:
            return
        assert asyncio.get_running_loop().time() < deadline, "the worker never used Redis again"
        await asyncio.sleep(0.1)


async def test_when_redis_goes_away_commands_still_succeed_and_it_is_shared_again_once_back(
    two_workers: tuple[str, RedisServer], database_url: str
) -> None:
    url, redis = two_workers
    async with httpx.AsyncClient(base_url=url) as client:
        room_id, seats = await new_room(client, 4, **NIGHT_GAME)
        await start(client, room_id, seats)
        (mafioso,) = by_role(seats, "mafia")
        (doctor,) = by_role(seats, "doctor")
        victim = next(s for s in seats if s.role != "mafia")
        sockets = await socket_on_each_worker(url, database_url, room_id, mafioso)
        # The doctor probes each worker (their chat is closed at night, once past the limit).
        probes = await socket_on_each_worker(url, database_url, room_id, doctor)
        chat_burst = int(WORKERS_ENV["CHAT_BURST"])
        try:
            redis.stop()
            # Every command still answered; each worker limits on its own: a burst per worker.
            said = await replies_alternating(sockets, {"type": "chat", "text": "hi"}, 3 * chat_burst)
            assert said == ["ack"] * (2 * chat_burst) + ["rate_limited"] * chat_burst, said
            voted = await replies_alternating(sockets, {"type": "vote", "target_player_id": victim.id}, 2)
            assert voted == ["ack", "ack"]
            created = await fresh_connection_post(url, "/v1/rooms", create_body(), local_address="127.0.0.4")
            assert created.status_code == 201, created.text

            # Back (empty, as after a restart): each worker decides in Redis again, one
            # allowance for both.
            redis.start()
            direct = Redis.from_url(redis.url)
            try:
                for probe in probes:
                    await until_decided_in_redis(direct, probe)
            finally:
                await direct.aclose()
            said = await replies_alternating(sockets, {"type": "chat", "text": "hi"}, 2 * chat_burst)
            assert said == ["ack"] * chat_burst + ["rate_limited"] * chat_burst, said
        finally:
            if redis.process is None:
                redis.start()
            for socket in sockets + probes:
                await socket.close()
