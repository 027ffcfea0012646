"""Quick join: the fullest open public lobby of a ruleset, or a new one, even under a crowd."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from backend.core.db import Database
from tests.conftest import bearer, create_room
from tests.integration.test_lobby import assert_problem

DEFAULT_MAX = 10  # mafia's default max_players: a lobby quick join creates has as many seats


@pytest.fixture
async def quiet(app: FastAPI) -> AsyncIterator[None]:
    """No open lobby but the test's own: the earlier tests' lobbies (same database) are closed,
    since a quick join would rightly pick them."""

    async def close_lobbies() -> None:
        db: Database = app.state.db
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE rooms SET status = 'closed', ended_at = now() WHERE status = 'lobby'")
            )

    await close_lobbies()
    yield
    await close_lobbies()


async def quick_join(client: httpx.AsyncClient, nickname: str, ruleset: str = "mafia") -> httpx.Response:
    return await client.post("/v1/quick-join", json={"ruleset": ruleset, "nickname": nickname})


async def joined(client: httpx.AsyncClient, nickname: str, ruleset: str = "mafia") -> dict[str, Any]:
    """Quick-join and return the 201 session."""
    response = await quick_join(client, nickname, ruleset)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def fill(client: httpx.AsyncClient, room: dict[str, Any], count: int, prefix: str) -> None:
    """Join `count` more players to a room by its id (and code)."""
    for i in range(count):
        body = {"nickname": f"{prefix}{i}", "code": room["room"]["code"]}
        response = await client.post(f"/v1/rooms/{room['room']['id']}/players", json=body)
        assert response.status_code == 201, response.text


async def lobbies(app: FastAPI, ruleset: str) -> dict[str, tuple[int, int]]:
    """Return each open lobby of the ruleset: (players present, max_players)."""
    db: Database = app.state.db
    async with db.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT r.id, (r.settings->>'max_players')::int AS seats,"
                " (SELECT count(*) FROM players p WHERE p.room_id = r.id AND p.left_at IS NULL) AS present"
                " FROM rooms r WHERE r.status = 'lobby' AND r.ruleset = :ruleset"
            ),
            {"ruleset": ruleset},
        )
        return {str(row.id): (row.present, row.seats) for row in result}


async def test_fifty_at_once_fill_the_lobbies_one_by_one_and_open_no_surplus_lobby(
    client: httpx.AsyncClient, app: FastAPI, quiet: None
) -> None:
    """50 quick joins at once: the partly filled 8-seat lobby fills first, then each new lobby
    fills before another opens. So afterwards every lobby but one is exactly full, the seats
    taken are the callers plus those seated before, and there are as few lobbies as can seat
    them all."""
    seeded = await create_room(client, nickname="Seed", settings={"max_players": 8})
    await fill(client, seeded, 2, "Early")
    callers = 50
    responses = await asyncio.gather(*(quick_join(client, f"Crowd{i}") for i in range(callers)))
    assert [r.status_code for r in responses] == [201] * callers, [
        r.text for r in responses if r.status_code != 201
    ]
    sessions = [r.json() for r in responses]
    assert len({s["player"]["id"] for s in sessions}) == callers
    assert len({s["token"] for s in sessions}) == callers

    rooms = await lobbies(app, "mafia")
    assert rooms[seeded["room"]["id"]] == (8, 8)
    assert all(present <= seats for present, seats in rooms.values())
    assert sum(present for present, _ in rooms.values()) == callers + 3
    assert sum(present < seats for present, seats in rooms.values()) <= 1
    assert len(rooms) == 1 + math.ceil((callers - 5) / DEFAULT_MAX)
    # Each new lobby's first caller hosts it; a session's room is the one its player sits in.
    hosts = [s for s in sessions if s["player"]["is_host"]]
    assert len(hosts) == len(rooms) - 1
    assert all(
        s["room"]["name"] == "Quick mafia" and s["room"]["settings"]["private"] is False for s in hosts
    )
    for session in sessions:
        state = await client.get(f"/v1/rooms/{session['room']['id']}/state", headers=bearer(session["token"]))
        assert state.status_code == 200, state.text
        assert state.json()["me"]["id"] == session["player"]["id"]


async def test_the_fullest_public_lobby_of_the_ruleset_is_joined_oldest_first(
    client: httpx.AsyncClient, app: FastAPI, quiet: None
) -> None:
    """Private, full, started lobbies and other rulesets are passed over, however full."""
    two = await create_room(client, nickname="HostA")
    await fill(client, two, 1, "A")
    three_old = await create_room(client, nickname="HostB")
    await fill(client, three_old, 2, "B")
    three_new = await create_room(client, nickname="HostC")
    await fill(client, three_new, 2, "C")
    private = await create_room(client, nickname="HostD", settings={"private": True})
    await fill(client, private, 5, "D")
    full = await create_room(client, nickname="HostE", settings={"max_players": 4})
    await fill(client, full, 3, "E")
    started = await create_room(client, nickname="HostF")
    await fill(client, started, 5, "F")
    start = await client.post(f"/v1/rooms/{started['room']['id']}/start", headers=bearer(started["token"]))
    assert start.status_code == 200, start.text
    missions = await create_room(client, nickname="HostG", ruleset="missions")
    await fill(client, missions, 5, "G")

    first = await joined(client, "Newcomer")
    assert first["room"]["id"] == three_old["room"]["id"]
    assert first["room"]["player_count"] == 4
    assert first["player"]["seat"] == 4
    assert not first["player"]["is_host"]
    # Now the fullest by one: the next one comes here too.
    assert (await joined(client, "Second"))["room"]["id"] == three_old["room"]["id"]
    # A nickname taken (or a look-alike) in the fullest lobby: the next lobby rather than a refusal.
    assert (await joined(client, "newcomer"))["room"]["id"] == three_new["room"]["id"]
    # Another ruleset's fullest lobby is its own.
    assert (await joined(client, "Other", "missions"))["room"]["id"] == missions["room"]["id"]

    rooms = await lobbies(app, "mafia")
    assert rooms[private["room"]["id"]] == (6, 10)
    assert rooms[full["room"]["id"]] == (4, 4)
    assert rooms[two["room"]["id"]] == (2, 10)
    state = await client.get(f"/v1/rooms/{three_old['room']['id']}/state", headers=bearer(first["token"]))
    assert [p["nickname"] for p in state.json()["players"]] == ["HostB", "B0", "B1", "Newcomer", "Second"]


async def test_with_no_open_lobby_the_caller_hosts_a_new_public_one(
    client: httpx.AsyncClient, app: FastAPI, quiet: None
) -> None:
    session = await joined(client, "Lonely", "missions")
    room = session["room"]
    assert (room["status"], room["ruleset"], room["player_count"], room["game"]) == (
        "lobby",
        "missions",
        1,
        0,
    )
    assert room["name"] == "Quick missions"
    assert room["settings"]["private"] is False
    assert session["player"]["is_host"]
    assert room["host_player_id"] == session["player"]["id"]
    listed = await client.get("/v1/rooms", params={"status": "lobby"})
    assert room["id"] in [r["id"] for r in listed.json()["items"]]
    assert await lobbies(app, "missions") == {room["id"]: (1, 10)}


async def test_a_bad_ruleset_or_nickname_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, app: FastAPI, quiet: None
) -> None:
    assert_problem(await quick_join(client, "Erin", "poker"), 422, "validation_failed")
    assert_problem(await client.post("/v1/quick-join", json={"nickname": "Erin"}), 422, "validation_failed")
    assert_problem(await quick_join(client, "   "), 422, "validation_failed")
    assert await lobbies(app, "mafia") == {}
