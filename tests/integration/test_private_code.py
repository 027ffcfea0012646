"""A private room's join code: its members see it, nobody else does, whatever they hold."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import bearer, create_room
from tests.integration.test_lobby import assert_problem, join, room_events


async def test_a_private_rooms_code_reaches_members_only(client: httpx.AsyncClient, app: FastAPI) -> None:
    host = await create_room(client, name="Office party", settings={"private": True})
    room_id, code = host["room"]["id"], host["room"]["code"]
    assert len(code) == 6  # the host is told

    # Whoever has only the id (it is in every stream URL) sees the summary, not the code.
    summary = await client.get(f"/v1/rooms/{room_id}")
    assert summary.status_code == 200
    assert summary.json()["code"] is None
    assert summary.json()["name"] == "Office party"
    assert summary.json()["player_count"] == 1

    # ...and no other public answer tells it.
    public: list[httpx.Response] = [
        summary,
        await client.get("/v1/rooms"),
        await client.get("/v1/rooms", params={"status": "lobby", "limit": 100}),
        await join(client, room_id, "Eve"),
        await join(client, room_id, "Eve", code="ABCDEF" if code != "ABCDEF" else "ABCDEG"),
        await client.get(f"/v1/rooms/{room_id}/state"),
        await client.get(f"/v1/rooms/{room_id}/events"),
        await client.get(f"/v1/rooms/{room_id}/rounds"),
    ]
    for response in public:
        assert code not in response.text, (response.request.url, response.text)
    assert_problem(public[3], 403, "room_code_required")

    # Knowing the code is the invitation: the code finds the room and lets one in.
    found = (await client.get("/v1/rooms", params={"code": code})).json()["items"]
    assert [r["id"] for r in found] == [room_id]
    guest = await join(client, room_id, "Dave", code=code)
    assert guest.status_code == 201
    member: dict[str, Any] = guest.json()
    assert member["room"]["code"] == code

    # Members read it in their state and in the room's events.
    state = (await client.get(f"/v1/rooms/{room_id}/state", headers=bearer(member["token"]))).json()
    assert state["room"]["code"] == code
    renamed = await client.patch(
        f"/v1/rooms/{room_id}", json={"name": "Late party"}, headers=bearer(host["token"])
    )
    assert renamed.json()["code"] == code
    updated = [e for e in await room_events(app, room_id) if e["type"] == "room.updated"]
    assert updated[-1]["data"]["room"]["code"] == code

    # Still hidden from the public summary once renamed; a public room's summary keeps its code.
    assert (await client.get(f"/v1/rooms/{room_id}")).json()["code"] is None
    listed = await create_room(client)
    assert (await client.get(f"/v1/rooms/{listed['room']['id']}")).json()["code"] == listed["room"]["code"]
