"""The mafia game over HTTP: start, votes, phases, idempotency, chat routing, rounds."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from backend.core.db import Database
from tests.game_support import Seat, new_room, play_round_of_votes, start, state
from tests.integration.test_lobby import assert_problem


async def log_of(app: FastAPI, room_id: str) -> list[dict[str, Any]]:
    """Return the room's whole event log (every audience), in seq order."""
    db: Database = app.state.db
    async with db.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT seq, type, data, visibility, audience FROM room_events"
                " WHERE room_id = :r ORDER BY seq"
            ),
            {"r": room_id},
        )
        return [dict(row._mapping) for row in result]


def by_role(seats: list[Seat], role: str) -> list[Seat]:
    """Return the players dealt `role`."""
    return [s for s in seats if s.role == role]


async def vote(
    client: httpx.AsyncClient, room_id: str, seat: Seat, target: str | None, **extra: Any
) -> httpx.Response:
    """Cast a vote."""
    return await client.post(
        f"/v1/rooms/{room_id}/votes",
        headers={**seat.auth, **extra.pop("headers", {})},
        json={"target_player_id": target, **extra},
    )


async def test_only_the_host_starts_a_full_enough_lobby_and_nobody_joins_after(
    client: httpx.AsyncClient,
) -> None:
    """Start is host-only, needs 4 players and a valid deal, and closes the door behind it."""
    room_id, seats = await new_room(client, 3)
    assert_problem(
        await client.post(f"/v1/rooms/{room_id}/start", headers=seats[0].auth), 409, "not_enough_players"
    )
    joined = await client.post(f"/v1/rooms/{room_id}/players", json={"nickname": "P4"})
    seats.append(Seat(joined.json()["player"]["id"], joined.json()["token"], "P4"))
    assert_problem(await client.post(f"/v1/rooms/{room_id}/start", headers=seats[1].auth), 403, "not_host")
    patched = await client.patch(
        f"/v1/rooms/{room_id}",
        headers=seats[0].auth,
        json={"settings": {"roles": {"mafia": 2, "doctor": 0, "detective": 0}}},
    )
    assert patched.status_code == 200
    assert_problem(
        await client.post(f"/v1/rooms/{room_id}/start", headers=seats[0].auth), 409, "invalid_roles"
    )
    await client.patch(f"/v1/rooms/{room_id}", headers=seats[0].auth, json={"settings": {"roles": None}})
    await start(client, room_id, seats)
    assert sorted(s.role or "" for s in seats) == ["citizen", "citizen", "citizen", "mafia"]
    view = await state(client, room_id, seats[0])
    assert (view["room"]["status"], view["room"]["round"], view["room"]["phase"]) == (
        "in_progress",
        1,
        "night",
    )
    assert view["room"]["phase_ends_at"] is not None
    assert_problem(
        await client.post(f"/v1/rooms/{room_id}/players", json={"nickname": "Late"}), 409, "room_not_in_lobby"
    )
    assert_problem(
        await client.post(f"/v1/rooms/{room_id}/start", headers=seats[0].auth), 409, "room_not_in_lobby"
    )


async def test_roles_are_dealt_by_default_counts_and_each_player_sees_only_what_they_may(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Eight players: 2 mafia, a doctor, a detective; town sees its own role, mafia see each other."""
    room_id, seats = await new_room(client, 8)
    await start(client, room_id, seats)
    assert sorted(s.role or "" for s in seats) == ["citizen"] * 4 + ["detective", "doctor", "mafia", "mafia"]
    mafia = {s.id for s in by_role(seats, "mafia")}
    for seat in seats:
        view = await state(client, room_id, seat)
        assert view["me"]["role"] == seat.role
        known = {p["id"]: p["role"] for p in view["players"] if p["role"] is not None}
        if seat.id in mafia:
            assert known == {m: "mafia" for m in mafia}
            assert set(view["teammates"]) == mafia - {seat.id}
        else:
            assert known == {seat.id: seat.role}
            assert view["teammates"] == []
    log = await log_of(app, room_id)
    dealt = [e for e in log if e["type"] == "role.assigned"]
    assert [e["type"] for e in log[8:10]] == ["game.started", "role.assigned"]
    assert len(dealt) == 8
    assert all(e["visibility"] == "player" for e in dealt)
    assert {e["audience"]: e["data"]["role"] for e in dealt} == {s.id: s.role for s in seats}
    # After the first phase opens, each player who may act now is told their options, privately.
    told = [e for e in log if e["type"] == "options.changed"]
    assert told
    assert all(e["visibility"] == "player" for e in told)
    opened = [e for e in log if e["type"] != "options.changed"][-1]
    assert opened["type"] == "phase.started"
    assert opened["data"]["phase"] == "night"


async def test_votes_follow_role_phase_and_life(client: httpx.AsyncClient) -> None:
    """Out-of-turn, dead, misdirected and late votes are refused with stable codes."""
    room_id, seats = await new_room(client, 6)
    assert_problem(await vote(client, room_id, seats[0], None), 409, "game_not_in_progress")
    await start(client, room_id, seats)
    mafia, citizen = by_role(seats, "mafia")[0], by_role(seats, "citizen")[0]
    doctor, detective = by_role(seats, "doctor")[0], by_role(seats, "detective")[0]
    assert_problem(await vote(client, room_id, citizen, mafia.id), 409, "cannot_act")
    assert_problem(await vote(client, room_id, mafia, mafia.id), 409, "invalid_target")
    assert_problem(await vote(client, room_id, detective, detective.id), 409, "invalid_target")
    assert_problem(await vote(client, room_id, mafia, str(uuid.uuid4())), 409, "invalid_target")
    assert_problem(await vote(client, room_id, mafia, citizen.id, round=1, phase="vote"), 409, "phase_closed")
    assert_problem(
        await vote(client, room_id, mafia, citizen.id, round=2, phase="night"), 409, "phase_closed"
    )
    bad = await vote(client, room_id, mafia, "not-a-uuid")
    assert_problem(bad, 422, "validation_failed")
    # The mafia change their mind: both votes are kept, the last one counts.
    first = await vote(client, room_id, mafia, doctor.id, round=1, phase="night")
    assert first.status_code == 201, first.text
    assert first.json()["vote"]["action"] == "kill"
    assert first.json()["phase_closed"] is False
    assert (await vote(client, room_id, mafia, citizen.id)).status_code == 201
    assert (await vote(client, room_id, doctor, doctor.id)).status_code == 201
    last = await vote(client, room_id, detective, mafia.id)
    assert last.status_code == 201
    assert last.json()["phase_closed"] is True
    view = await state(client, room_id, seats[0])
    assert view["room"]["phase"] == "day"
    dead = {p["id"] for p in view["players"] if not p["alive"]}
    assert dead == {citizen.id}
    rounds = (await client.get(f"/v1/rooms/{room_id}/rounds", headers=mafia.auth)).json()["rounds"]
    night = rounds[0]["phases"][0]
    kills = [v["target_player_id"] for v in night["votes"] if v["action"] == "kill"]
    assert kills == [doctor.id, citizen.id]
    assert night["tally"] == [{"target_player_id": citizen.id, "votes": 1}]
    assert night["eliminated_player_id"] == citizen.id
    # The dead watch; the day has nothing to vote on.
    assert_problem(await vote(client, room_id, citizen, None), 409, "player_dead")
    assert_problem(await vote(client, room_id, mafia, None), 409, "cannot_act")
    # The detective alone learned the mafia member's team.
    detective_rounds = (await client.get(f"/v1/rooms/{room_id}/rounds", headers=detective.auth)).json()
    assert detective_rounds["rounds"][0]["phases"][0]["investigations"] == [
        {"detective_id": detective.id, "target_player_id": mafia.id, "team": "mafia"}
    ]
    assert detective_rounds["rounds"][0]["phases"][0]["tally"] is None
    assert all(not p["investigations"] for r in rounds for p in r["phases"])


async def test_a_protected_target_survives_the_night(client: httpx.AsyncClient) -> None:
    """The doctor protects the mafia's target: nobody dies, the day says so."""
    room_id, seats = await new_room(client, 5)
    await start(client, room_id, seats)
    mafia, doctor = by_role(seats, "mafia")[0], by_role(seats, "doctor")[0]
    target = by_role(seats, "citizen")[0]
    await vote(client, room_id, mafia, target.id)
    closed = await vote(client, room_id, doctor, target.id)
    assert closed.json()["phase_closed"] is True
    view = await state(client, room_id, target)
    assert view["room"]["phase"] == "day"
    assert all(p["alive"] for p in view["players"])


async def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A retried vote gets the first answer and is written once; the key with another body is 422."""
    room_id, seats = await new_room(client, 6)
    await start(client, room_id, seats)
    mafia = by_role(seats, "mafia")[0]
    town = [s for s in seats if s.role != "mafia"]
    key = {"Idempotency-Key": "vote-1"}
    first = await vote(client, room_id, mafia, town[0].id, headers=key)
    again = await vote(client, room_id, mafia, town[0].id, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert_problem(await vote(client, room_id, mafia, town[1].id, headers=key), 409, "idempotency_key_reused")
    cast = [e for e in await log_of(app, room_id) if e["type"] == "vote.cast"]
    assert len(cast) == 1
    # Another player's same key is theirs alone.
    doctor = by_role(seats, "doctor")[0]
    assert (await vote(client, room_id, doctor, doctor.id, headers=key)).status_code == 201


async def test_the_host_advances_a_phase_once_even_when_clicking_twice(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A guarded advance closes that phase once; a second identical one is phase_closed."""
    room_id, seats = await new_room(client, 4)
    await start(client, room_id, seats)
    assert_problem(await client.post(f"/v1/rooms/{room_id}/advance", headers=seats[1].auth), 403, "not_host")
    body = {"round": 1, "phase": "night"}
    answers = await asyncio.gather(
        *(client.post(f"/v1/rooms/{room_id}/advance", headers=seats[0].auth, json=body) for _ in range(3))
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409]
    assert next(a for a in answers if a.status_code == 200).json()["phase"] == "day"
    unguarded = await client.post(f"/v1/rooms/{room_id}/advance", headers=seats[0].auth)
    assert unguarded.status_code == 200
    assert unguarded.json()["phase"] == "vote"
    started = [e["data"]["phase"] for e in await log_of(app, room_id) if e["type"] == "phase.started"]
    assert started == ["night", "day", "vote"]


async def test_chat_is_routed_by_phase(client: httpx.AsyncClient, app: FastAPI) -> None:
    """At night only the mafia talk, among themselves; by day everyone; the dead keep quiet."""
    room_id, seats = await new_room(client, 6)
    await start(client, room_id, seats)
    mafia, citizen = by_role(seats, "mafia")[0], by_role(seats, "citizen")[0]
    said = await client.post(f"/v1/rooms/{room_id}/messages", headers=mafia.auth, json={"text": "who?"})
    assert said.status_code == 201
    assert said.json()["channel"] == "mafia"
    refused = await client.post(f"/v1/rooms/{room_id}/messages", headers=citizen.auth, json={"text": "hi"})
    assert_problem(refused, 409, "chat_closed")
    message = next(e for e in await log_of(app, room_id) if e["type"] == "chat.message")
    assert (message["visibility"], message["audience"]) == ("team", "mafia")
    await client.post(f"/v1/rooms/{room_id}/advance", headers=seats[0].auth)
    day = await client.post(f"/v1/rooms/{room_id}/messages", headers=citizen.auth, json={"text": "morning"})
    assert day.status_code == 201
    assert day.json()["channel"] == "room"


async def test_a_deadline_closes_the_phase_by_itself(client: httpx.AsyncClient) -> None:
    """With one-second phases and nobody acting, the scheduler moves the game on."""
    room_id, seats = await new_room(client, 4, night_seconds=1, day_seconds=1)
    await start(client, room_id, seats)
    for _ in range(100):
        view = await state(client, room_id, seats[0])
        if view["room"]["phase"] == "vote":
            break
        await asyncio.sleep(0.05)
    assert (view["room"]["round"], view["room"]["phase"]) == (1, "vote")


async def test_random_games_end_with_the_right_winner(client: httpx.AsyncClient) -> None:
    """Random legal play over HTTP reaches game.finished with a winner the survivors justify."""
    for seed, players in ((1, 4), (2, 7), (3, 10)):
        room_id, seats = await new_room(client, players)
        await start(client, room_id, seats)
        rng = random.Random(seed)
        for _ in range(200):
            room = await play_round_of_votes(client, room_id, seats, rng)
            if room["status"] == "finished":
                break
        view = await state(client, room_id, seats[0])
        assert view["room"]["status"] == "finished"
        alive = [p for p in view["players"] if p["alive"]]
        mafia_alive = sum(p["team"] == "mafia" for p in alive)
        town_alive = len(alive) - mafia_alive
        assert view["room"]["winner"] == ("town" if mafia_alive == 0 else "mafia")
        assert mafia_alive == 0 or mafia_alive >= town_alive
        # Everything is public now.
        assert all(p["role"] is not None for p in view["players"])
