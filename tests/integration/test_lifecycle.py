"""Room lifecycle against a real server process with short settings (PRODUCT.md "Room
lifecycle"): idle lobbies close, abandoned games end and their timers stop, ended rooms are
purged with everything they hold; a room with a connected player stays open."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from backend.core.runtime import asyncpg_connect_args, migrate, recreate_database
from tests.conftest import TEST_DATABASE, postgres_server_url
from tests.game_support import Seat, new_room, play_round_of_votes, start
from tests.support import Server, check_envelope, serve, sse_events, sse_stream

# A lobby closes after 3 s with nobody connected, a game after 1.2 s; the sweep runs every
# 0.1 s. Ended rooms are kept a day (the purge test moves their end back in time).
SHORT = {
    "LOBBY_IDLE_MINUTES": "0.05",
    "GAME_IDLE_MINUTES": "0.02",
    "RETENTION_DAYS": "1",
    "LIFECYCLE_SWEEP_SECONDS": "0.1",
    "PRESENCE_GRACE_SECONDS": "0.1",
}


@pytest.fixture(scope="module")
def lifecycle_db() -> str:
    """A database of these tests' own: their short settings close every room in it."""
    url = recreate_database(postgres_server_url(), f"{TEST_DATABASE}_lifecycle")
    migrate(url)
    return url


@pytest.fixture(scope="module")
def short(lifecycle_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose idle lobbies and games close within about a second."""
    log = tmp_path_factory.mktemp("lifecycle") / "server.log"
    with serve(lifecycle_db, log, SHORT) as server:
        yield server
    assert "Traceback" not in log.read_text(), log.read_text()


class Rooms:
    """Polls rooms' public summaries (the condition each test waits on)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.seen: dict[str, httpx.Response] = {}

    async def fetch(self, room_id: str) -> httpx.Response:
        self.seen[room_id] = response = await self.http.get(f"/v1/rooms/{room_id}")
        return response

    async def until(self, room_id: str, done: Any, within: float = 15.0) -> dict[str, Any]:
        """Wait until `done(response)` holds for the room's summary; return its last body."""
        deadline = asyncio.get_running_loop().time() + within
        while not done(await self.fetch(room_id)):
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting on room {room_id}"
            await asyncio.sleep(0.05)  # the poll interval, as in tests.support.wait_for
        body: dict[str, Any] = self.seen[room_id].json()
        return body


async def until_connected(http: httpx.AsyncClient, room_id: str, seat: Seat, within: float = 15.0) -> None:
    """Wait until the room shows the player connected (their stream's lease is recorded)."""
    deadline = asyncio.get_running_loop().time() + within
    while not (await http.get(f"/v1/rooms/{room_id}/state", headers=seat.auth)).json()["me"]["connected"]:
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting for presence"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def hosted_room(
    http: httpx.AsyncClient, players: int, **settings: Any
) -> AsyncIterator[tuple[str, list[Seat]]]:
    """A room whose host streams (is connected) from right after creating it, with `players`
    players in all: it is never idle while the block runs."""
    body = {
        "name": "Hosted",
        "nickname": "P1",
        "ruleset": "mafia",
        "settings": {"max_players": 10, **settings},
    }
    created = (await http.post("/v1/rooms", json=body)).json()
    room_id = created["room"]["id"]
    seats = [Seat(created["player"]["id"], created["token"], "P1")]
    async with sse_stream(http, f"/v1/rooms/{room_id}/events", created["token"]) as response:
        stream = sse_events(response)  # held: a dropped generator closes the stream
        assert (await anext(stream)).event == "snapshot"
        await until_connected(http, room_id, seats[0])
        for i in range(2, players + 1):
            joined = (await http.post(f"/v1/rooms/{room_id}/players", json={"nickname": f"P{i}"})).json()
            seats.append(Seat(joined["player"]["id"], joined["token"], f"P{i}"))
        yield room_id, seats


def r_status(rooms: Rooms, room_id: str) -> str:
    """The status in the room's summary last fetched."""
    status: str = rooms.seen[room_id].json()["status"]
    return status


def status_is(status: str) -> Any:
    return lambda r: r.status_code == 200 and r.json()["status"] == status


async def log_of(http: httpx.AsyncClient, room_id: str, token: str, until_type: str) -> list[dict[str, Any]]:
    """Replay the room's log over SSE from the start as a member, up to the first `until_type`."""
    seen: list[dict[str, Any]] = []
    async with sse_stream(http, f"/v1/rooms/{room_id}/events", token, after=0) as response:
        async for event in sse_events(response):
            seen.append(check_envelope(event))
            if event.event == until_type:
                return seen
    raise AssertionError(f"no {until_type} in {[e['type'] for e in seen]}")


async def test_an_idle_lobby_closes_with_an_event_and_refuses_commands(short: Server) -> None:
    async with httpx.AsyncClient(base_url=short.url, timeout=30) as http:
        room_id, (host, guest) = await new_room(http, 2)
        room = await Rooms(http).until(room_id, status_is("closed"))
        assert room["host_player_id"] is None

        events = await log_of(http, room_id, host.token, "room.closed")
        closed = events[-1]
        assert closed["data"]["reason"] == "idle"
        assert closed["data"]["room"]["status"] == "closed"
        state = (await http.get(f"/v1/rooms/{room_id}/state", headers=host.auth)).json()
        assert state["room"]["status"] == "closed"
        assert state["last_seq"] == closed["seq"]  # the room's last event

        refused = [
            await http.post(f"/v1/rooms/{room_id}/players", json={"nickname": "Late"}),
            await http.post(f"/v1/rooms/{room_id}/start", headers=host.auth),
            await http.post(f"/v1/rooms/{room_id}/messages", json={"text": "anyone?"}, headers=guest.auth),
            await http.patch(f"/v1/rooms/{room_id}", json={"name": "Again"}, headers=host.auth),
            await http.delete(f"/v1/rooms/{room_id}/players/{guest.id}", headers=guest.auth),
        ]
        for response in refused:
            assert response.status_code == 409, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == "room_closed"


async def test_a_lobby_with_a_connected_player_stays_open_until_they_leave(short: Server) -> None:
    async with httpx.AsyncClient(base_url=short.url, timeout=30) as http:
        rooms = Rooms(http)
        watched_id, (host,) = await new_room(http, 1)
        async with sse_stream(http, f"/v1/rooms/{watched_id}/events", host.token) as response:
            stream = sse_events(response)  # held: a dropped generator closes the stream
            assert (await anext(stream)).event == "snapshot"
            await until_connected(http, watched_id, host)
            # A lobby made after the host connected closes: the sweep has run past the time the
            # watched lobby would have closed, had it been idle.
            witness_id, _ = await new_room(http, 1)
            await rooms.until(witness_id, status_is("closed"))
            assert (await rooms.fetch(watched_id)).json()["status"] == "lobby"
        # The host's stream closed: the lobby is idle from then on, and closes.
        await rooms.until(watched_id, status_is("closed"))


async def test_an_abandoned_game_ends_without_a_winner_and_its_timers_stop(short: Server) -> None:
    async with httpx.AsyncClient(base_url=short.url, timeout=30) as http:
        rooms = Rooms(http)
        # Nobody streams: the game is idle from its start, and ends while its night is open.
        room_id, seats = await new_room(http, 4, night_seconds=2)
        await start(http, room_id, seats)
        room = await rooms.until(room_id, status_is("closed"))
        assert room["winner"] is None
        assert room["phase"] is None
        assert room["phase_ends_at"] is None
        host = seats[0]
        events = await log_of(http, room_id, host.token, "room.closed")
        assert events[-1]["data"]["reason"] == "abandoned"
        assert "game.finished" not in [e["type"] for e in events]
        closed_seq = events[-1]["seq"]

        # A game started now, whose host is connected, is not abandoned, and its first deadline
        # (later than any the abandoned game had) fires: the scheduler ran past them all.
        async with hosted_room(http, 4, night_seconds=2) as (witness_id, witness):
            await start(http, witness_id, witness)
            await rooms.until(witness_id, lambda r: r.json()["phase"] == "day")
            assert r_status(rooms, witness_id) == "in_progress"

        # Nothing was appended to the abandoned game after room.closed: no phase.started.
        state = (await http.get(f"/v1/rooms/{room_id}/state", headers=host.auth)).json()
        assert state["last_seq"] == closed_seq
        assert state["room"]["round"] == 1
        vote = await http.post(
            f"/v1/rooms/{room_id}/votes", json={"target_player_id": None}, headers=seats[1].auth
        )
        assert vote.status_code == 409, vote.text
        assert vote.json()["code"] == "room_closed"


async def _rows_of(database_url: str, room_id: str, player_ids: list[str]) -> dict[str, int]:
    """Count what the database holds of the room and its players, table by table."""
    conn = await asyncpg.connect(**asyncpg_connect_args(database_url))
    try:
        rid, pids = uuid.UUID(room_id), [uuid.UUID(p) for p in player_ids]
        counts = {"rooms": await conn.fetchval("SELECT count(*) FROM rooms WHERE id = $1", rid)}
        for table in ("players", "room_events", "votes", "phase_results", "stream_leases"):
            counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE room_id = $1", rid)
        counts["idempotency_keys"] = await conn.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE player_id = ANY($1::uuid[])", pids
        )
        return counts
    finally:
        await conn.close()


async def play_to_the_end(http: httpx.AsyncClient, room_id: str, seats: list[Seat]) -> None:
    """Play random legal votes until the game is finished."""
    rng = random.Random(7)
    for _ in range(200):
        room = await play_round_of_votes(http, room_id, seats, rng)
        if room["status"] == "finished":
            return
    raise AssertionError("the game did not finish")


async def _end_days_ago(database_url: str, room_ids: list[str], days: float) -> None:
    """Move the rooms' end back in time, as if they had ended `days` ago."""
    conn = await asyncpg.connect(**asyncpg_connect_args(database_url))
    try:
        await conn.execute(
            "UPDATE rooms SET ended_at = now() - make_interval(days => $2) WHERE id = ANY($1::uuid[])",
            [uuid.UUID(r) for r in room_ids],
            days,
        )
    finally:
        await conn.close()


async def test_rooms_ended_longer_ago_than_the_retention_are_purged_with_everything_they_hold(
    short: Server, lifecycle_db: str
) -> None:
    async with httpx.AsyncClient(base_url=short.url, timeout=30) as http:
        rooms = Rooms(http)
        async with hosted_room(http, 4) as (finished_id, seats):  # not abandoned while played
            await start(http, finished_id, seats)
            mafia = next(s for s in seats if s.role == "mafia")
            vote = await http.post(
                f"/v1/rooms/{finished_id}/votes",
                json={"target_player_id": None},
                headers={**mafia.auth, "Idempotency-Key": "k1"},
            )
            assert vote.status_code == 201, vote.text
            await play_to_the_end(http, finished_id, seats)
            held = await _rows_of(lifecycle_db, finished_id, [s.id for s in seats])
            assert all(held.values()), held  # a lease, events, votes, results, a key...
        emptied_id, (alone,) = await new_room(http, 1)
        left = await http.delete(f"/v1/rooms/{emptied_id}/players/{alone.id}", headers=alone.auth)
        assert left.status_code == 204
        recent_id, (recent,) = await new_room(http, 1)
        left = await http.delete(f"/v1/rooms/{recent_id}/players/{recent.id}", headers=recent.auth)
        assert left.status_code == 204

        await _end_days_ago(lifecycle_db, [finished_id, emptied_id], 1.01)
        for room_id, players in ((finished_id, seats), (emptied_id, [alone])):
            await rooms.until(room_id, lambda r: r.status_code == 404)
            assert rooms.seen[room_id].json()["code"] == "room_not_found"
            assert set((await _rows_of(lifecycle_db, room_id, [p.id for p in players])).values()) == {0}
        gone = await http.get(f"/v1/rooms/{finished_id}/state", headers=seats[0].auth)
        assert gone.status_code == 401
        # A room that ended within the retention stays.
        assert (await rooms.fetch(recent_id)).json()["status"] == "closed"
