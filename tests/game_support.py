"""Helpers for game tests: fill a room, start it, read roles, and play it to the end."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import bearer


@dataclass
class Seat:
    """One test player: their id, token, and (once dealt) role."""

    id: str
    token: str
    nickname: str
    role: str | None = None

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


async def new_room(
    client: httpx.AsyncClient, players: int, *, ruleset: str = "mafia", **settings: Any
) -> tuple[str, list[Seat]]:
    """Create a room of a ruleset with `players` players (the first hosts) and these settings."""
    least = 5 if ruleset == "missions" else 4
    body: dict[str, Any] = {
        "name": "Game night",
        "nickname": "P1",
        "ruleset": ruleset,
        "settings": {"max_players": max(players, least), **settings},
    }
    created = await client.post("/v1/rooms", json=body)
    assert created.status_code == 201, created.text
    room_id = created.json()["room"]["id"]
    seats = [Seat(created.json()["player"]["id"], created.json()["token"], "P1")]
    for i in range(2, players + 1):
        joined = await client.post(f"/v1/rooms/{room_id}/players", json={"nickname": f"P{i}"})
        assert joined.status_code == 201, joined.text
        seats.append(Seat(joined.json()["player"]["id"], joined.json()["token"], f"P{i}"))
    return room_id, seats


async def start(client: httpx.AsyncClient, room_id: str, seats: list[Seat]) -> None:
    """Start the game as the host and learn every player's role from their own state."""
    started = await client.post(f"/v1/rooms/{room_id}/start", headers=seats[0].auth)
    assert started.status_code == 200, started.text
    for seat in seats:
        state = await client.get(f"/v1/rooms/{room_id}/state", headers=seat.auth)
        assert state.status_code == 200, state.text
        seat.role = state.json()["me"]["role"]


async def state(client: httpx.AsyncClient, room_id: str, seat: Seat) -> dict[str, Any]:
    """Return a player's view of the room."""
    response = await client.get(f"/v1/rooms/{room_id}/state", headers=seat.auth)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def choose(
    rng: random.Random, me: Seat, room: dict[str, Any], alive: list[str], roles: dict[str, str]
) -> str | None:
    """Return a legal target for `me` in the open phase (a random strategy)."""
    phase = room["phase"]
    if phase == "night" and me.role == "mafia":
        options = [p for p in alive if roles[p] != "mafia"]
    elif phase == "night" and me.role == "doctor":
        options = list(alive)
    else:
        options = [p for p in alive if p != me.id]
    return rng.choice([*options, None]) if options else None


async def play_round_of_votes(
    client: httpx.AsyncClient, room_id: str, seats: list[Seat], rng: random.Random
) -> dict[str, Any]:
    """Let every player who may act in the open phase vote (the host advances a day); return the room."""
    view = await state(client, room_id, seats[0])
    room: dict[str, Any] = view["room"]
    if room["status"] != "in_progress":
        return room
    alive = [p["id"] for p in view["players"] if p["alive"]]
    roles = {s.id: s.role or "" for s in seats}
    if room["phase"] == "day":
        advanced = await client.post(
            f"/v1/rooms/{room_id}/advance",
            headers=seats[0].auth,
            json={"round": room["round"], "phase": "day"},
        )
        assert advanced.status_code in (200, 409), advanced.text
        return room
    for seat in seats:
        if seat.id not in alive:
            continue
        if room["phase"] == "night" and seat.role == "citizen":
            continue
        target = choose(rng, seat, room, alive, roles)
        body = {"target_player_id": target, "round": room["round"], "phase": room["phase"]}
        voted = await client.post(f"/v1/rooms/{room_id}/votes", headers=seat.auth, json=body)
        assert voted.status_code in (201, 409), voted.text
    return room
