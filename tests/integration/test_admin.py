"""The operators' API (`/admin/api`, PRODUCT.md "Operators"): only with `ADMIN_TOKEN`, only
with that token (and that token nowhere else); live rooms with roles, streams and their newest
event; the whole log with hidden events marked; a finished game replayed from its log to the
room's final state, for both rulesets; closing a room as its streams see it."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text

from backend.app import create_app
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.security import hash_token, new_token
from backend.persistence.tables import SpectatorRow
from tests.conftest import bearer
from tests.game_support import Seat, new_room, play_round_of_votes, start, state
from tests.integration.test_game import log_of
from tests.integration.test_lobby import assert_problem
from tests.integration.test_missions import act_all
from tests.support import Server, check_envelope, serve, sse_events, sse_stream

ADMIN_TOKEN = "operators-only-" + "7" * 32
ADMIN = bearer(ADMIN_TOKEN)


@pytest.fixture(scope="module")
async def admin_app(database_url: str) -> AsyncIterator[FastAPI]:
    """The application with an ADMIN_TOKEN, started against the test database."""
    application = create_app(Settings(admin_token=SecretStr(ADMIN_TOKEN)), database_url=database_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def admin_client(admin_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=admin_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://roundtable.test") as c:
        yield c


def admin_paths(room_id: str) -> list[tuple[str, str]]:
    """Every operation of the operators' API, on one room."""
    return [
        ("GET", "/admin/api/rooms"),
        ("GET", f"/admin/api/rooms/{room_id}"),
        ("GET", f"/admin/api/rooms/{room_id}/events"),
        ("GET", f"/admin/api/rooms/{room_id}/replay"),
        ("POST", f"/admin/api/rooms/{room_id}/close"),
    ]


async def finish_mafia(client: httpx.AsyncClient, players: int = 5, seed: int = 3) -> tuple[str, list[Seat]]:
    """Play a mafia game over HTTP to its end; return the room and its seats."""
    room_id, seats = await new_room(client, players)
    await start(client, room_id, seats)
    rng = random.Random(seed)
    for _ in range(200):
        if (await play_round_of_votes(client, room_id, seats, rng))["status"] == "finished":
            break
    assert (await state(client, room_id, seats[0]))["room"]["status"] == "finished"
    return room_id, seats


async def finish_missions(client: httpx.AsyncClient, seed: int = 7) -> tuple[str, list[Seat]]:
    """Play a missions game from each player's options to its end."""
    room_id, seats = await new_room(client, 5, ruleset="missions")
    await start(client, room_id, seats)
    rng = random.Random(seed)
    for _ in range(300):
        if (await state(client, room_id, seats[0]))["room"]["status"] == "finished":
            break
        await act_all(client, room_id, seats, rng)
    assert (await state(client, room_id, seats[0]))["room"]["status"] == "finished"
    return room_id, seats


async def listed(client: httpx.AsyncClient, room_id: str, **params: Any) -> dict[str, Any] | None:
    """Return the room as the operators' listing shows it (walking every page), if it does."""
    cursor = None
    while True:
        query = {**params, "limit": 100, **({"cursor": cursor} if cursor else {})}
        page = await client.get("/admin/api/rooms", headers=ADMIN, params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        for room in body["items"]:
            if room["id"] == room_id:
                found: dict[str, Any] = room
                return found
        cursor = body["next_cursor"]
        if cursor is None:
            return None


# Without ADMIN_TOKEN: no /admin at all.


async def test_without_an_admin_token_every_admin_path_is_not_found(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    assert not app.state.settings.admin_token.get_secret_value(), "the default test app has no ADMIN_TOKEN"
    room_id = str(uuid.uuid4())
    unknown = await client.get("/no/such/path")
    assert_problem(unknown, 404, "not_found")
    for method, path in [("GET", "/admin"), *admin_paths(room_id)]:
        for headers in ({}, ADMIN):
            answer = await client.request(method, path, headers=headers)
            assert_problem(answer, 404, "not_found")
            assert answer.json() == unknown.json(), path
    # Not even a malformed request learns more: the 404 comes before the parameters are read.
    assert_problem(await client.get("/admin/api/rooms", params={"limit": 0}), 404, "not_found")
    assert_problem(await client.get("/admin/api/rooms/not-a-uuid/events"), 404, "not_found")
    # Nor a method the routes do not take (with a token, that is a 405 naming those they take).
    for method, path in [("DELETE", "/admin/api/rooms"), ("PUT", "/admin"), ("POST", "/admin/api/rooms")]:
        answer = await client.request(method, path)
        assert answer.json() == unknown.json(), (method, path)
        assert "allow" not in answer.headers


# Authorization, both ways.


async def test_the_admin_api_takes_the_admin_token_and_nothing_else(
    admin_client: httpx.AsyncClient, admin_app: FastAPI
) -> None:
    room_id, seats = await new_room(admin_client, 4)
    await start(admin_client, room_id, seats)
    spectator = new_token()
    db: Database = admin_app.state.db
    async with db.transaction() as session:
        session.add(
            SpectatorRow(id=uuid.uuid4(), room_id=uuid.UUID(room_id), token_hash=hash_token(spectator))
        )
    refused: list[dict[str, str]] = [
        {},
        bearer("operators-only-" + "8" * 32),
        bearer(ADMIN_TOKEN + "x"),
        bearer(ADMIN_TOKEN[:-1]),
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        seats[0].auth,
        bearer(spectator),
    ]
    for method, path in admin_paths(room_id):
        for headers in refused:
            answer = await admin_client.request(method, path, headers=headers)
            assert_problem(answer, 401, "unauthorized")
            assert answer.headers["www-authenticate"] == "Bearer"
        # A refused close closed nothing.
        assert (await state(admin_client, room_id, seats[0]))["room"]["status"] == "in_progress"
        answer = await admin_client.request(method, path, headers=ADMIN)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers["cache-control"] == "no-store"
    wrong = await admin_client.delete("/admin/api/rooms", headers=ADMIN)
    assert_problem(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "GET"
    # The admin's close did.
    assert (await admin_client.get(f"/v1/rooms/{room_id}")).json()["status"] == "closed"


async def test_the_admin_token_opens_no_player_endpoint(admin_client: httpx.AsyncClient) -> None:
    room_id, seats = await new_room(admin_client, 4)
    await start(admin_client, room_id, seats)
    base = f"/v1/rooms/{room_id}"
    calls = [
        ("GET", f"{base}/state", None),
        ("POST", f"{base}/actions", {"type": "vote", "target_player_id": None}),
        ("POST", f"{base}/messages", {"text": "I am the operator"}),
        ("GET", f"{base}/events", None),
        ("GET", f"{base}/rounds", None),
    ]
    for method, path, body in calls:
        answer = await admin_client.request(method, path, headers=ADMIN, json=body)
        assert_problem(answer, 401, "unauthorized")
    # Nor as the stream's token in the URL (EventSource's way).
    answer = await admin_client.get(f"{base}/events", params={"access_token": ADMIN_TOKEN})
    assert_problem(answer, 401, "unauthorized")
    assert "I am the operator" not in str(await log_of_app(admin_client, room_id))


async def log_of_app(client: httpx.AsyncClient, room_id: str) -> list[dict[str, Any]]:
    """The room's log as the operators' API pages it (every audience)."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await client.get(
            f"/admin/api/rooms/{room_id}/events", headers=ADMIN, params={"after": after, "limit": 7}
        )
        assert page.status_code == 200, page.text
        events += page.json()["items"]
        if page.json()["next_after"] is None:
            return events
        after = page.json()["next_after"]
        assert after == events[-1]["seq"]


# What operators see.


async def test_the_listing_shows_live_rooms_with_every_role_and_their_newest_event(
    admin_client: httpx.AsyncClient, admin_app: FastAPI
) -> None:
    room_id, seats = await new_room(admin_client, 5)
    lobby = await listed(admin_client, room_id)
    assert lobby is not None
    assert (lobby["status"], lobby["game"], lobby["phase"]) == ("lobby", 0, None)
    assert [p["nickname"] for p in lobby["players"]] == [s.nickname for s in seats]
    assert all(p["role"] is None for p in lobby["players"])

    await start(admin_client, room_id, seats)
    room = await listed(admin_client, room_id)
    assert room is not None
    assert (room["status"], room["game"], room["round"], room["phase"]) == ("in_progress", 1, 1, "night")
    # Every role and team, each as its own player was dealt it; nobody has a stream open here.
    assert {p["id"]: p["role"] for p in room["players"]} == {s.id: s.role for s in seats}
    for player in room["players"]:
        assert player["team"] == ("mafia" if player["role"] == "mafia" else "town")
    assert (room["streams"], room["spectator_count"]) == (0, 0)
    db: Database = admin_app.state.db
    async with db.engine.connect() as conn:
        newest = (
            await conn.execute(
                text("SELECT seq, created_at FROM room_events WHERE room_id = :r ORDER BY seq DESC LIMIT 1"),
                {"r": room_id},
            )
        ).one()
    assert room["last_seq"] == newest.seq
    assert datetime.fromisoformat(room["last_event_at"]) == newest.created_at

    # A room in full: the same room, its settings, and the game's state with every secret in it.
    detail = (await admin_client.get(f"/admin/api/rooms/{room_id}", headers=ADMIN)).json()
    assert detail["room"] == room
    assert detail["settings"]["ruleset"] == "mafia"
    assert detail["settings"]["max_players"] == 5
    assert {pid: role for pid, role, _ in detail["state"]["seats"]} == {s.id: s.role for s in seats}
    lobby_detail = await admin_client.get(
        f"/admin/api/rooms/{(await new_room(admin_client, 1))[0]}", headers=ADMIN
    )
    assert lobby_detail.json()["state"] is None
    assert lobby_detail.json()["room"]["last_event_at"] is not None

    # Closed rooms are listed only when asked for.
    await admin_client.post(f"/admin/api/rooms/{room_id}/close", headers=ADMIN)
    assert await listed(admin_client, room_id) is None
    closed = await listed(admin_client, room_id, status="closed")
    assert closed is not None
    assert closed["status"] == "closed"
    assert await listed(admin_client, room_id, status="in_progress") is None

    assert_problem(
        await admin_client.get(f"/admin/api/rooms/{uuid.uuid4()}", headers=ADMIN), 404, "room_not_found"
    )
    bad = await admin_client.get("/admin/api/rooms", headers=ADMIN, params={"status": "playing"})
    assert_problem(bad, 422, "validation_failed")


async def test_the_listing_pages_newest_first(admin_client: httpx.AsyncClient) -> None:
    made = [(await new_room(admin_client, 1))[0] for _ in range(3)]
    first = (await admin_client.get("/admin/api/rooms", headers=ADMIN, params={"limit": 2})).json()
    assert [r["id"] for r in first["items"]] == made[::-1][:2]
    second = await admin_client.get(
        "/admin/api/rooms", headers=ADMIN, params={"limit": 2, "cursor": first["next_cursor"]}
    )
    assert second.json()["items"][0]["id"] == made[0]


async def test_the_log_marks_exactly_the_hidden_events(
    admin_client: httpx.AsyncClient, admin_app: FastAPI
) -> None:
    room_id, _ = await finish_mafia(admin_client)
    log = await log_of_app(admin_client, room_id)
    stored = await log_of(admin_app, room_id)
    assert [(e["seq"], e["type"], e["data"], e["visibility"], e["audience"]) for e in log] == [
        (e["seq"], e["type"], e["data"], e["visibility"], e["audience"]) for e in stored
    ]
    for event in log:
        assert event["hidden"] is (event["visibility"] != "room"), event
    # A game has both: night votes and roles are hidden, phases are not.
    assert {e["type"] for e in log if e["hidden"]} >= {"role.assigned", "vote.cast"}
    assert not any(e["hidden"] for e in log if e["type"] in ("phase.started", "game.finished"))
    tail = await admin_client.get(
        f"/admin/api/rooms/{room_id}/events", headers=ADMIN, params={"after": log[-1]["seq"]}
    )
    assert tail.json() == {"items": [], "next_after": None}
    missing = await admin_client.get(f"/admin/api/rooms/{uuid.uuid4()}/events", headers=ADMIN)
    assert_problem(missing, 404, "room_not_found")


async def assert_replay_ends_in_the_final_state(
    client: httpx.AsyncClient, room_id: str, seats: list[Seat], game: int = 1
) -> None:
    replay = await client.get(f"/admin/api/rooms/{room_id}/replay", headers=ADMIN)
    assert replay.status_code == 200, replay.text
    body = replay.json()
    assert (body["room_id"], body["game"], body["finished"]) == (room_id, game, True)
    steps = body["steps"]
    log = await log_of_app(client, room_id)
    started = [e["seq"] for e in log if e["type"] == "game.started"][game - 1]
    # One step per event of the game, every audience, from its game.started on.
    assert [(s["seq"], s["type"], s["hidden"]) for s in steps] == [
        (e["seq"], e["type"], e["hidden"]) for e in log if e["seq"] >= started
    ]
    assert steps[0]["type"] == "game.started"
    assert all(p["role"] is None for p in steps[0]["players"])
    final = await state(client, room_id, seats[0])
    last = steps[-1]
    assert last["type"] == "game.finished"
    assert (last["status"], last["winner"], last["phase"]) == ("finished", final["room"]["winner"], None)
    assert last["round"] == final["room"]["round"]
    assert [(p["id"], p["nickname"], p["role"], p["team"], p["alive"]) for p in last["players"]] == [
        (p["id"], p["nickname"], p["role"], p["team"], p["alive"]) for p in final["players"]
    ]
    # The same with the game named, and a game not played is not found.
    named = await client.get(f"/admin/api/rooms/{room_id}/replay", headers=ADMIN, params={"game": game})
    assert named.json() == body
    later = await client.get(f"/admin/api/rooms/{room_id}/replay", headers=ADMIN, params={"game": game + 1})
    assert_problem(later, 404, "game_not_found")


async def test_a_finished_mafia_game_replays_to_the_rooms_final_state(
    admin_client: httpx.AsyncClient,
) -> None:
    room_id, seats = await finish_mafia(admin_client, players=7, seed=5)
    await assert_replay_ends_in_the_final_state(admin_client, room_id, seats)
    steps = (await admin_client.get(f"/admin/api/rooms/{room_id}/replay", headers=ADMIN)).json()["steps"]
    # Lives are lost step by step, as the log tells them.
    dead = [s["seq"] for s in steps if s["type"] == "player.eliminated"]
    assert dead
    before = next(s for s in reversed(steps) if s["seq"] < dead[0])
    after = next(s for s in steps if s["seq"] == dead[0])
    assert sum(p["alive"] for p in after["players"]) == sum(p["alive"] for p in before["players"]) - 1


async def test_a_finished_missions_game_replays_to_the_rooms_final_state(
    admin_client: httpx.AsyncClient,
) -> None:
    room_id, seats = await finish_missions(admin_client)
    await assert_replay_ends_in_the_final_state(admin_client, room_id, seats)


async def test_each_game_of_a_room_replays_from_its_own_start(admin_client: httpx.AsyncClient) -> None:
    """After a rematch a room holds two games: each runs from its game.started to the next, and
    the second ends in the room's final state too."""
    room_id, seats = await finish_mafia(admin_client, players=5, seed=2)
    first = (await admin_client.get(f"/admin/api/rooms/{room_id}/replay", headers=ADMIN)).json()
    rematch = await admin_client.post(f"/v1/rooms/{room_id}/rematch", headers=seats[0].auth)
    assert rematch.status_code == 200, rematch.text
    running = (await admin_client.get(f"/admin/api/rooms/{room_id}/replay", headers=ADMIN)).json()
    assert (running["game"], running["finished"]) == (2, False)
    assert running["steps"][0]["type"] == "game.started"
    assert running["steps"][0]["seq"] > first["steps"][-1]["seq"]
    # Dealt afresh: nobody's role from the first game, everybody alive again.
    assert running["steps"][0]["players"] == [
        {**p, "role": None, "team": None, "alive": True} for p in first["steps"][-1]["players"]
    ]
    listed_room = await listed(admin_client, room_id)
    assert listed_room is not None
    assert (listed_room["game"], listed_room["status"]) == (2, "in_progress")
    for seat in seats:
        seat.role = (await state(admin_client, room_id, seat))["me"]["role"]
    rng = random.Random(4)
    for _ in range(200):
        if (await play_round_of_votes(admin_client, room_id, seats, rng))["status"] == "finished":
            break
    await assert_replay_ends_in_the_final_state(admin_client, room_id, seats, game=2)
    again = await admin_client.get(f"/admin/api/rooms/{room_id}/replay", headers=ADMIN, params={"game": 1})
    assert again.json() == first
    later = await admin_client.get(f"/admin/api/rooms/{room_id}/replay", headers=ADMIN, params={"game": 3})
    assert_problem(later, 404, "game_not_found")


async def test_a_lobby_has_no_game_to_replay(admin_client: httpx.AsyncClient) -> None:
    room_id, _ = await new_room(admin_client, 2)
    replay = await admin_client.get(f"/admin/api/rooms/{room_id}/replay", headers=ADMIN)
    assert_problem(replay, 404, "game_not_found")
    missing = await admin_client.get(f"/admin/api/rooms/{uuid.uuid4()}/replay", headers=ADMIN)
    assert_problem(missing, 404, "room_not_found")


async def test_closing_a_running_game_ends_it_once(admin_client: httpx.AsyncClient) -> None:
    room_id, seats = await new_room(admin_client, 4)
    await start(admin_client, room_id, seats)
    closed = await admin_client.post(f"/admin/api/rooms/{room_id}/close", headers=ADMIN)
    assert closed.status_code == 200, closed.text
    room = closed.json()
    assert (room["status"], room["phase"], room["phase_ends_at"]) == ("closed", None, None)
    log = await log_of_app(admin_client, room_id)
    assert log[-1]["type"] == "room.closed"
    assert log[-1]["data"]["reason"] == "operator"
    assert log[-1]["seq"] == room["last_seq"]
    # It takes no command any more.
    host = seats[0]
    base = f"/v1/rooms/{room_id}"
    action = await admin_client.post(
        f"{base}/actions", headers=host.auth, json={"type": "vote", "target_player_id": None}
    )
    assert_problem(action, 409, "room_closed")
    assert_problem(await admin_client.post(f"{base}/advance", headers=host.auth), 409, "room_closed")
    chat = await admin_client.post(f"{base}/messages", headers=host.auth, json={"text": "hello?"})
    assert_problem(chat, 409, "room_closed")
    # Closing it again changes nothing.
    again = await admin_client.post(f"/admin/api/rooms/{room_id}/close", headers=ADMIN)
    assert again.status_code == 200
    assert again.json() == room
    assert await log_of_app(admin_client, room_id) == log
    missing = await admin_client.post(f"/admin/api/rooms/{uuid.uuid4()}/close", headers=ADMIN)
    assert_problem(missing, 404, "room_not_found")


# Streams: a real server process (the event stream is read as it is written).


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with an ADMIN_TOKEN."""
    log = tmp_path_factory.mktemp("admin") / "server.log"
    with serve(database_url, log, {"ADMIN_TOKEN": ADMIN_TOKEN, "CATCHUP_SECONDS": "0.2"}) as s:
        yield s
    assert "Traceback" not in log.read_text(), log.read_text()


async def test_open_streams_are_counted_and_hear_the_room_close(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        room_id, seats = await new_room(http, 4)
        await start(http, room_id, seats)
        url = f"/v1/rooms/{room_id}/events"
        async with sse_stream(http, url, seats[1].token) as response:
            events = sse_events(response)
            assert (await anext(events)).event == "snapshot"
            # The listing counts the stream once it is open (across workers, through the same count).
            room: dict[str, Any] | None = None
            deadline = asyncio.get_running_loop().time() + 15
            while room is None or room["streams"] != 1:
                assert asyncio.get_running_loop().time() < deadline, f"streams never counted: {room}"
                room = await listed(http, room_id)
                await asyncio.sleep(0.05)
            assert room is not None
            assert room["last_event_at"] is not None
            closed = await http.post(f"/admin/api/rooms/{room_id}/close", headers=ADMIN)
            assert closed.status_code == 200, closed.text
            payload: dict[str, Any] = {}
            async with asyncio.timeout(15):
                async for event in events:
                    payload = check_envelope(event)
                    if payload["type"] == "room.closed":
                        break
            assert payload["data"]["reason"] == "operator"
            assert payload["data"]["room"]["status"] == "closed"
            assert payload["seq"] == closed.json()["last_seq"]
        vote = {"type": "vote", "target_player_id": None}
        action = await http.post(f"/v1/rooms/{room_id}/actions", headers=seats[1].auth, json=vote)
        assert_problem(action, 409, "room_closed")
        again = await http.post(f"/admin/api/rooms/{room_id}/close", headers=ADMIN)
        assert again.json()["last_seq"] == closed.json()["last_seq"]
        page = await http.get("/admin", headers={})
        assert page.status_code == 200
        assert "content-security-policy" in page.headers
