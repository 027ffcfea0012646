"""The lobby end to end: HTTP in, PostgreSQL rows and events out."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from backend.core.db import Database
from tests.conftest import bearer, create_room

PROBLEM = "application/problem+json"


async def room_events(app: FastAPI, room_id: str) -> list[dict[str, Any]]:
    """Return the room's event log rows, in seq order."""
    db: Database = app.state.db
    async with db.engine.connect() as conn:
        result = await conn.execute(
            text("SELECT seq, type, data FROM room_events WHERE room_id = :r ORDER BY seq"), {"r": room_id}
        )
        return [dict(row._mapping) for row in result]


async def present_players(app: FastAPI, room_id: str) -> list[dict[str, Any]]:
    """Return the players still in the room, by seat."""
    db: Database = app.state.db
    async with db.engine.connect() as session:
        result = await session.execute(
            text(
                "SELECT id, nickname, seat FROM players WHERE room_id = :r AND left_at IS NULL ORDER BY seat"
            ),
            {"r": room_id},
        )
        return [dict(row._mapping) for row in result]


async def join(client: httpx.AsyncClient, room_id: str, nickname: str, **extra: Any) -> httpx.Response:
    """Join a room."""
    return await client.post(f"/v1/rooms/{room_id}/players", json={"nickname": nickname, **extra})


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert `response` is a problem+json with this status and code; return it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["title"]
    return problem


async def test_create_room_answers_room_player_and_a_token_stored_only_hashed(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    session = await create_room(client, nickname="  Alice  ")
    room, player, token = session["room"], session["player"], session["token"]
    assert room["status"] == "lobby"
    assert room["host_player_id"] == player["id"]
    assert room["settings"]["max_players"] == 10
    assert room["settings"]["night_seconds"] == 60
    assert room["round"] == 0
    assert len(room["code"]) == 6
    assert set(room["code"]) <= set("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
    assert player["nickname"] == "Alice"
    assert player["is_host"] is True
    assert player["seat"] == 1
    assert len(token) >= 43  # 32 random bytes, URL-safe base64

    db: Database = app.state.db
    async with db.engine.connect() as s:
        stored = (
            await s.execute(text("SELECT token_hash FROM players WHERE id = :p"), {"p": player["id"]})
        ).one()
        anywhere = (
            await s.execute(
                text("SELECT count(*) FROM players WHERE players::text LIKE :t"), {"t": f"%{token}%"}
            )
        ).scalar_one()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert anywhere == 0

    events = await room_events(app, room["id"])
    assert [(e["seq"], e["type"]) for e in events] == [(1, "player.joined")]
    assert events[0]["data"]["player"]["id"] == player["id"]


async def test_state_is_the_callers_view_with_last_seq(client: httpx.AsyncClient) -> None:
    host = await create_room(client)
    room_id = host["room"]["id"]
    guest = (await join(client, room_id, "Bob")).json()
    state = (await client.get(f"/v1/rooms/{room_id}/state", headers=bearer(guest["token"]))).json()
    assert state["me"]["id"] == guest["player"]["id"]
    assert [p["nickname"] for p in state["players"]] == ["Host", "Bob"]
    assert state["last_seq"] == 2
    assert state["room"]["player_count"] == 2
    assert state["teammates"] == []
    assert state["votes"] == []


async def test_listing_is_newest_first_paginated_and_filtered(client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    created = [await create_room(client, name=f"{tag}-{i}") for i in range(3)]
    private = await create_room(client, name=f"{tag}-private", settings={"private": True})

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "status": "lobby"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/rooms", params=params)).json()
        assert len(page["items"]) <= 2
        seen += [r["name"] for r in page["items"] if r["name"].startswith(tag)]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"{tag}-2", f"{tag}-1", f"{tag}-0"]
    assert f"{tag}-private" not in seen

    by_code = (await client.get("/v1/rooms", params={"code": private["room"]["code"]})).json()
    assert [r["id"] for r in by_code["items"]] == [private["room"]["id"]]
    finished = (await client.get("/v1/rooms", params={"status": "finished"})).json()
    assert all(r["status"] == "finished" for r in finished["items"])
    one = (await client.get(f"/v1/rooms/{created[0]['room']['id']}")).json()
    assert one["name"] == f"{tag}-0"


async def test_private_room_is_joined_by_code_only(client: httpx.AsyncClient, app: FastAPI) -> None:
    host = await create_room(client, settings={"private": True})
    room = host["room"]
    assert_problem(await join(client, room["id"], "Eve"), 403, "room_code_required")
    wrong = "ABCDEF" if room["code"] != "ABCDEF" else "ABCDEG"
    assert_problem(await join(client, room["id"], "Eve", code=wrong), 403, "room_code_required")
    assert len(await present_players(app, room["id"])) == 1
    assert (await join(client, room["id"], "Eve", code=room["code"])).status_code == 201


async def test_nicknames_are_trimmed_and_unique_ignoring_case(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    host = await create_room(client, nickname="Alice")
    room_id = host["room"]["id"]
    before = await room_events(app, room_id)
    problem = assert_problem(await join(client, room_id, "  aLiCe "), 409, "nickname_taken")
    assert "Alice" in problem["detail"] or "aLiCe" in problem["detail"]
    assert await room_events(app, room_id) == before
    assert len(await present_players(app, room_id)) == 1
    assert_problem(await join(client, room_id, "   "), 422, "validation_failed")
    assert_problem(await join(client, room_id, "x" * 25), 422, "validation_failed")


async def test_forty_concurrent_joins_fill_the_room_exactly(client: httpx.AsyncClient, app: FastAPI) -> None:
    host = await create_room(client, settings={"max_players": 10})
    room_id = host["room"]["id"]
    responses = await asyncio.gather(*(join(client, room_id, f"p{i}") for i in range(40)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 9
    assert statuses.count(409) == 31
    assert all(r.json()["code"] == "room_full" for r in responses if r.status_code == 409)

    players = await present_players(app, room_id)
    assert len(players) == 10
    assert sorted(p["seat"] for p in players) == list(range(1, 11))
    events = await room_events(app, room_id)
    assert [e["seq"] for e in events] == list(range(1, 11))
    state = (await client.get(f"/v1/rooms/{room_id}/state", headers=bearer(host["token"]))).json()
    assert state["last_seq"] == 10


async def test_ten_concurrent_joins_with_one_nickname_make_one_player(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    host = await create_room(client)
    room_id = host["room"]["id"]
    responses = await asyncio.gather(*(join(client, room_id, "Twin" if i % 2 else "TWIN") for i in range(10)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    assert len(await present_players(app, room_id)) == 2
    assert [e["seq"] for e in await room_events(app, room_id)] == [1, 2]


async def test_a_token_is_worthless_in_another_room(client: httpx.AsyncClient, app: FastAPI) -> None:
    a = await create_room(client, name="A")
    b = await create_room(client, name="B")
    b_id = b["room"]["id"]
    foreign = bearer(a["token"])
    before = await room_events(app, b_id)

    problem = assert_problem(
        await client.get(f"/v1/rooms/{b_id}/state", headers=foreign), 403, "not_a_member"
    )
    assert "players" not in problem
    assert b["room"]["code"] not in str(problem)
    assert_problem(
        await client.patch(f"/v1/rooms/{b_id}", json={"name": "x"}, headers=foreign), 403, "not_a_member"
    )
    kick = f"/v1/rooms/{b_id}/players/{b['player']['id']}"
    assert_problem(await client.delete(kick, headers=foreign), 403, "not_a_member")
    assert await room_events(app, b_id) == before

    assert_problem(await client.get(f"/v1/rooms/{b_id}/state"), 401, "unauthorized")
    assert_problem(
        await client.get(f"/v1/rooms/{b_id}/state", headers=bearer("not-a-real-token")), 401, "unauthorized"
    )


async def test_only_the_host_patches_and_kicks(client: httpx.AsyncClient, app: FastAPI) -> None:
    host = await create_room(client)
    room_id = host["room"]["id"]
    guest = (await join(client, room_id, "Guest")).json()
    other = (await join(client, room_id, "Other")).json()
    before = await room_events(app, room_id)

    patch = await client.patch(f"/v1/rooms/{room_id}", json={"name": "Mine"}, headers=bearer(guest["token"]))
    assert_problem(patch, 403, "not_host")
    kick = await client.delete(
        f"/v1/rooms/{room_id}/players/{other['player']['id']}", headers=bearer(guest["token"])
    )
    assert_problem(kick, 403, "not_host")
    assert await room_events(app, room_id) == before
    assert len(await present_players(app, room_id)) == 3

    kicked = await client.delete(
        f"/v1/rooms/{room_id}/players/{other['player']['id']}", headers=bearer(host["token"])
    )
    assert kicked.status_code == 204
    last = (await room_events(app, room_id))[-1]
    assert last["type"] == "player.left"
    assert last["data"] == {"player_id": other["player"]["id"], "reason": "kicked"}
    gone = await client.get(f"/v1/rooms/{room_id}/state", headers=bearer(other["token"]))
    assert_problem(gone, 401, "unauthorized")


async def test_host_patches_name_and_settings_in_the_lobby(client: httpx.AsyncClient, app: FastAPI) -> None:
    host = await create_room(client, settings={"day_seconds": 90})
    room_id = host["room"]["id"]
    await join(client, room_id, "A")
    await join(client, room_id, "B")
    await join(client, room_id, "C")
    auth = bearer(host["token"])

    changed = await client.patch(
        f"/v1/rooms/{room_id}", json={"name": "  Renamed ", "settings": {"night_seconds": 30}}, headers=auth
    )
    assert changed.status_code == 200, changed.text
    room = changed.json()
    assert room["name"] == "Renamed"
    assert room["settings"]["night_seconds"] == 30
    assert room["settings"]["day_seconds"] == 90  # untouched settings keep their value
    last = (await room_events(app, room_id))[-1]
    assert last["type"] == "room.updated"
    assert last["data"]["room"]["name"] == "Renamed"

    await join(client, room_id, "D")  # five players now
    before = await room_events(app, room_id)
    assert_problem(
        await client.patch(f"/v1/rooms/{room_id}", json={"settings": {"max_players": 4}}, headers=auth),
        409,
        "max_players_below_player_count",
    )
    assert await room_events(app, room_id) == before
    snug = await client.patch(f"/v1/rooms/{room_id}", json={"settings": {"max_players": 5}}, headers=auth)
    assert snug.json()["settings"]["max_players"] == 5
    assert_problem(await join(client, room_id, "E"), 409, "room_full")
    empty = assert_problem(
        await client.patch(f"/v1/rooms/{room_id}", json={}, headers=auth), 422, "validation_failed"
    )
    assert empty["errors"]


async def test_full_room_refuses_a_join_and_writes_nothing(client: httpx.AsyncClient, app: FastAPI) -> None:
    host = await create_room(client, settings={"max_players": 4})
    room_id = host["room"]["id"]
    for name in ("A", "B", "C"):
        assert (await join(client, room_id, name)).status_code == 201
    before = await room_events(app, room_id)
    assert_problem(await join(client, room_id, "D"), 409, "room_full")
    assert await room_events(app, room_id) == before


async def test_host_leaving_hands_over_and_last_leaving_closes(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    host = await create_room(client)
    room_id = host["room"]["id"]
    second = (await join(client, room_id, "Second")).json()
    third = (await join(client, room_id, "Third")).json()

    left = await client.delete(
        f"/v1/rooms/{room_id}/players/{host['player']['id']}", headers=bearer(host["token"])
    )
    assert left.status_code == 204
    room = (await client.get(f"/v1/rooms/{room_id}")).json()
    assert room["host_player_id"] == second["player"]["id"]
    types = [e["type"] for e in await room_events(app, room_id)]
    assert types[-2:] == ["player.left", "room.updated"]

    for p in (second, third):
        r = await client.delete(
            f"/v1/rooms/{room_id}/players/{p['player']['id']}", headers=bearer(p["token"])
        )
        assert r.status_code == 204
    room = (await client.get(f"/v1/rooms/{room_id}")).json()
    assert room["status"] == "closed"
    assert room["player_count"] == 0
    events = await room_events(app, room_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "room.updated"
    assert events[-1]["data"]["room"]["status"] == "closed"
    assert_problem(await join(client, room_id, "Late"), 409, "room_closed")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "nickname": "y", "ruleset": "mafia", "colour": "red"}, "colour"),
        ({"name": "x", "nickname": "y", "ruleset": "chess"}, "ruleset"),
        ({"name": "x", "nickname": "y", "ruleset": "mafia", "settings": {"max_players": 21}}, "max_players"),
        ({"name": "x", "nickname": "y", "ruleset": "mafia", "settings": {"vote_seconds": 0}}, "vote_seconds"),
        ({"name": "x", "nickname": "y", "ruleset": "mafia", "settings": None}, "settings"),
        ({"name": "x", "ruleset": "mafia"}, "nickname"),
        ({"name": "x\u0000y", "nickname": "y", "ruleset": "mafia"}, "name"),
    ],
)
async def test_bad_input_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(await client.post("/v1/rooms", json=body), 422, "validation_failed")
    assert any(field in [str(p) for p in e["loc"]] for e in problem["errors"]), problem


async def test_malformed_and_oversized_bodies_are_problems(client: httpx.AsyncClient) -> None:
    broken = await client.post(
        "/v1/rooms", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(broken, 422, "validation_failed")
    huge = await client.post("/v1/rooms", json={"name": "x" * 70_000, "nickname": "y", "ruleset": "mafia"})
    assert_problem(huge, 413, "body_too_large")
    assert_problem(await client.get(f"/v1/rooms/{uuid.uuid4()}"), 404, "room_not_found")
    assert_problem(await client.get("/v1/rooms/not-a-uuid"), 422, "validation_failed")
    assert_problem(await client.put("/v1/rooms"), 405, "method_not_allowed")
    assert_problem(await client.get("/v1/rooms", params={"cursor": "abc"}), 422, "validation_failed")
