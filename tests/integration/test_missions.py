"""Missions over HTTP, played only from each player's options: the seam end to end, and who
may see what (roles, sealed approve votes, mission choices never)."""

from __future__ import annotations

import random
from typing import Any

import httpx
from fastapi import FastAPI

from tests.game_support import Seat, new_room, start, state
from tests.integration.test_game import log_of
from tests.integration.test_lobby import assert_problem


def body_for(option: dict[str, Any], rng: random.Random, fail: bool) -> dict[str, Any]:
    """Return an action the option allows: a random team, approve, or (spies, when asked) fail."""
    if option["pick"] > 0:
        return {"type": option["type"], "player_ids": rng.sample(option["targets"], option["pick"])}
    choice = "fail" if fail and "fail" in option["choices"] else option["choices"][0]
    return {"type": option["type"], "choice": choice}


async def act_all(client: httpx.AsyncClient, room_id: str, seats: list[Seat], rng: random.Random) -> int:
    """Let every player with an option now act once from it; return how many acted."""
    chosen = [(seat, (await state(client, room_id, seat))["options"]) for seat in seats]
    acted = 0
    for seat, options in chosen:
        for option in options[:1]:
            answer = await client.post(
                f"/v1/rooms/{room_id}/actions", headers=seat.auth, json=body_for(option, rng, fail=True)
            )
            assert answer.status_code == 201, answer.text
            acted += 1
    return acted


async def test_a_missions_game_played_from_options_ends_with_its_winner_and_hides_what_it_must(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    room_id, seats = await new_room(client, 6, ruleset="missions")
    await start(client, room_id, seats)
    roles = {s.id: s.role for s in seats}
    spies = {pid for pid, role in roles.items() if role == "spy"}
    assert len(spies) == 2
    for seat in seats:
        view = await state(client, room_id, seat)
        seen = {p["id"]: p["role"] for p in view["players"] if p["role"] is not None}
        assert seen == ({pid: "spy" for pid in spies} if seat.id in spies else {seat.id: "crew"})
        assert view["board"]["team_sizes"] == [2, 3, 4, 3, 4]
        leader = view["board"]["leader_player_id"]
        assert [o["type"] for o in view["options"]] == (["propose"] if seat.id == leader else [])
    # An action not listed is refused: a crew member's fail, a vote from mafia, a non-leader's team.
    crew = next(s for s in seats if s.id not in spies and s.id != leader)
    mafia_vote = {"type": "vote", "target_player_id": None}
    assert_problem(
        await client.post(f"/v1/rooms/{room_id}/actions", headers=crew.auth, json=mafia_vote),
        409,
        "cannot_act",
    )
    team = {"type": "propose", "player_ids": [s.id for s in seats[:2]]}
    assert_problem(
        await client.post(f"/v1/rooms/{room_id}/actions", headers=crew.auth, json=team), 409, "cannot_act"
    )
    dance = await client.post(f"/v1/rooms/{room_id}/actions", headers=crew.auth, json={"type": "dance"})
    assert assert_problem(dance, 422, "validation_failed")["errors"][0]["loc"] == ["body", "type"]
    assert_problem(
        await client.post(f"/v1/rooms/{room_id}/votes", headers=crew.auth, json={"target_player_id": None}),
        409,
        "cannot_act",
    )

    rng = random.Random(7)
    for _ in range(200):
        room = (await state(client, room_id, seats[0]))["room"]
        if room["status"] == "finished":
            break
        if room["phase"] == "approve":
            # Sealed: while the phase is open, nobody's /state shows another's approve vote.
            assert await act_all(client, room_id, seats[:3], rng) == 3
            for seat in seats:
                votes = (await state(client, room_id, seat))["votes"]
                assert votes == []
            assert await act_all(client, room_id, seats[3:], rng) == 3
        else:
            assert await act_all(client, room_id, seats, rng) >= 1
    room = (await state(client, room_id, seats[0]))["room"]
    assert room["status"] == "finished"

    log = await log_of(app, room_id)
    closed = [e["data"] for e in log if e["type"] == "mission.closed"]
    rejected = [e["data"] for e in log if e["type"] == "approval.closed" and not e["data"]["approved"]]
    won = sum(1 for c in closed if c["succeeded"])
    assert room["winner"] == ("crew" if won == 3 else "spies")
    assert won == 3 or len(closed) - won == 3 or any(r["rejections"] == 5 for r in rejected)
    assert all(e["visibility"] == "nobody" for e in log if e["type"] == "mission.chosen")
    assert all(e["visibility"] == "sealed" for e in log if e["type"] == "approval.cast")

    # After the end: every role shown, every approve vote in /rounds, no mission choice anywhere.
    for seat in seats:
        view = await state(client, room_id, seat)
        assert {p["id"]: p["role"] for p in view["players"]} == roles
        rounds = (await client.get(f"/v1/rooms/{room_id}/rounds", headers=seat.auth)).json()["rounds"]
        approvals = [p for r in rounds for p in r["phases"] if p["phase"] == "approve"]
        assert approvals
        assert all(p["closed"] and len(p["votes"]) >= 3 and p["approval"] for p in approvals)
        missions = [p for r in rounds for p in r["phases"] if p["phase"] == "mission"]
        assert all(p["votes"] == [] for p in missions)
        assert [p["mission"]["fails"] for p in missions] == [c["fails"] for c in closed]
        assert "mission.chosen" not in str(rounds)
    # Each approve phase that opened told every player, privately, that they may now vote.
    for i, event in enumerate(log):
        if event["type"] == "phase.started" and event["data"]["phase"] == "approve":
            told = {}
            for later in log[i + 1 :]:
                if later["type"] == "phase.started":
                    break
                if later["type"] == "options.changed":
                    told[later["audience"]] = [o["type"] for o in later["data"]["options"]]
            assert told == {s.id: ["approve"] for s in seats}
    finished = next(e["data"] for e in log if e["type"] == "game.finished")
    assert all(v["action"] == "approve" for v in finished["votes"])
