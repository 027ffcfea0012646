"""Every registered ruleset over HTTP against PostgreSQL: one short game with a fixed seed,
played only from each player's options, where every player's live stream, replay, snapshot,
/state and /rounds are held against the stored log (each event's visibility and audience),
and every refusal is read for what it must not tell."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from unittest import mock

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from backend.contract import api
from backend.core.db import Database
from backend.game import service
from backend.games import registry
from backend.games.projection import Now, Viewer, may_see
from backend.games.protocol import Ruleset, Visibility, phase_key
from backend.games.registry import RULESETS
from tests.game_support import Seat, new_room, start, state
from tests.integration.test_game import log_of
from tests.rulesets.broken import BROKEN
from tests.rulesets.conformance import (
    ACTION,
    PROMISES,
    Said,
    claims,
    dicts,
    listed_bodies,
    player_bounds,
    twin,
    unlisted_bodies,
)
from tests.rulesets.inprocess import StreamingTransport
from tests.support import check_envelope, sse_events

SEED = 14
# Turns (everyone with an option acts once) before the game must be over; random for the
# first RANDOM_TURNS, then everyone's first option, which ends a game.
MAX_TURNS, RANDOM_TURNS = 60, 8
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Log = list[dict[str, Any]]


async def stored(app: FastAPI, room_id: str) -> tuple[str, Any]:
    """Return the room's status and its game's state as stored."""
    db: Database = app.state.db
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT status, game FROM rooms WHERE id = :r"), {"r": room_id})).one()
    return row.status, row.game


def expected_stream(log: Log, player_id: str, upto: int) -> list[int]:
    """Return the seqs a player's stream from seq 1 carries, by each stored event's audience."""
    viewer, seqs = Viewer(player_id), []
    for event in log:
        if event["seq"] > upto:
            break
        if may_see(viewer, event["visibility"], event["audience"]):
            seqs.append(event["seq"])
            viewer = viewer.after(
                event["type"], event["data"].get("team") if event["type"] == "role.assigned" else None
            )
    return seqs


def expected_spectator_stream(log: Log, spectator_id: str, player_ids: Sequence[str], upto: int) -> list[int]:
    """Return the seqs a spectator's stream from seq 1 carries, after checking them against the
    stored log: exactly the events every player's stream carries, each to the room."""
    mine = expected_stream(log, spectator_id, upto)
    everyone = set.intersection(*(set(expected_stream(log, pid, upto)) for pid in player_ids))
    assert set(mine) == everyone, (
        f"a spectator's stream differs from every player's by {set(mine) ^ everyone}"
    )
    kept = [e for e in log if e["seq"] in everyone and e["visibility"] != Visibility.room]
    assert not kept, f"a spectator's stream carries {kept[0]['type']} to {kept[0]['visibility']}"
    return mine


def votes_told(votes: Sequence[dict[str, Any]], visible: Log, where: str) -> None:
    """Each vote shown must be one that an event the viewer may see tells."""
    said = [(obj, here) for e in visible for obj, here in dicts(e["data"]) if "voter_id" in obj]
    for vote in votes:
        assert any(
            obj["voter_id"] == vote["voter_id"]
            and here.get("round") == vote["round"]
            and vote.get("choice") in (None, obj.get("choice"))
            and vote.get("target_player_id") in (None, obj.get("target_player_id"))
            for obj, here in said
        ), f"{where} shows a vote no event the viewer may see tells: {vote}"


class Told:
    """The stored log, read once per event: what each says, and which events carry what a
    secret one (sealed, for nobody, or promised so) says."""

    def __init__(self, rules: Ruleset[Any, Any]) -> None:
        self.promised = PROMISES.get(rules.name, {})
        self.said: dict[int, Said] = {}
        self.carriers: dict[int, set[int]] = {}

    def secret(self, event: dict[str, Any]) -> bool:
        return event["visibility"] in (Visibility.sealed, Visibility.nobody) or event["type"] in self.promised

    def read(self, log: Log) -> None:
        new = [e["seq"] for e in log if e["seq"] not in self.said]
        for event in log:
            if event["seq"] not in self.said:
                self.said[event["seq"]] = Said.of(event["data"])
        for event in log:
            if not self.secret(event):
                continue
            seq = event["seq"]
            scan = new if seq in self.carriers else [e["seq"] for e in log]
            found = self.carriers.setdefault(seq, set())
            found |= {other for other in scan if other != seq and twin(self.said[seq], self.said[other])}


class Reads:
    """Holds what one player reads (/state, a snapshot, /rounds) against the stored log."""

    def __init__(
        self, told: Told, rules: Ruleset[Any, Any], log: Log, status: str, game: Any, me: dict[str, Any]
    ) -> None:
        player_id, team = me["id"], me["team"]
        self.player_id = player_id
        position = rules.position(rules.load(game))
        self.seats = {s.player_id: s for s in rules.seats(rules.load(game))}
        now, viewer = Now(status, position.key), Viewer(player_id, team)
        self.visible = [e for e in log if may_see(viewer, e["visibility"], e["audience"], now)]
        seen = {e["seq"] for e in self.visible}
        # What is kept from this player now: sealed facts, facts for nobody; not their own, nor
        # what an event they may see tells too (a closed vote's tally lists every vote).
        self.secrets = [
            (e, told.said[e["seq"]])
            for e in log
            if told.secret(e)
            and e["seq"] not in seen
            and player_id not in told.said[e["seq"]].ids
            and not told.carriers[e["seq"]] & seen
        ]

    def told_roles(self) -> tuple[set[str], set[str]]:
        """Return whose roles, and (but in answers to this player alone) teams, events told them."""
        roles, teams = set(), set()
        for event in self.visible:
            for pid, kind, value in claims(event["data"], set(self.seats)):
                seat = self.seats[pid]
                if pid == self.player_id or getattr(seat, kind) != value:
                    continue
                if kind == "role":
                    roles.add(pid)
                elif not (event["visibility"] == Visibility.player and event["audience"] == self.player_id):
                    teams.add(pid)
        return roles, teams

    def check_state(self, view: dict[str, Any], where: str) -> None:
        me = self.player_id
        shown = {p["id"] for p in view["players"] if p["role"] is not None or p["team"] is not None} - {me}
        roles, teams = self.told_roles()
        assert shown == roles, f"{where} shows the roles of {shown ^ roles} unlike the events {me} may see"
        assert teams <= shown, f"{where}: events told {me} the teams of {teams - shown}, not shown"
        assert set(view["teammates"]) <= shown | {me}, f"{where} names teammates whose role it hides"
        votes_told(view["votes"], self.visible, where)
        self.check_secrets(view, where)

    def check_rounds(self, rounds: dict[str, Any], where: str) -> None:
        votes = [v for r in rounds["rounds"] for p in r["phases"] for v in p["votes"]]
        votes_told(votes, self.visible, where)
        self.check_secrets(rounds, where)

    def check_secrets(self, shown: Any, where: str) -> None:
        carried = Said.of(shown)
        for event, said in self.secrets:
            assert not twin(said, carried), (
                f"{where} carries {event['type']} {event['data']}, kept from the viewer"
            )


async def snapshot(http: httpx.AsyncClient, room_id: str, seat: Seat) -> dict[str, Any]:
    """Return the snapshot a stream opens with."""
    async with http.stream("GET", f"/v1/rooms/{room_id}/events", headers=seat.auth) as response:
        assert response.status_code == 200
        async for event in sse_events(response):
            assert event.event == "snapshot"
            data: dict[str, Any] = check_envelope(event)["data"]
            return data
    raise AssertionError("the stream ended before its snapshot")


async def follow(http: httpx.AsyncClient, room_id: str, seat: Seat, into: Log) -> None:
    """Read a player's stream from seq 1 until the game ends."""
    async with http.stream(
        "GET", f"/v1/rooms/{room_id}/events", params={"after": 0}, headers=seat.auth
    ) as response:
        assert response.status_code == 200
        async for event in sse_events(response):
            into.append(check_envelope(event))
            if event.event == "game.finished":
                return


async def check_reads(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    app: FastAPI,
    rules: Ruleset[Any, Any],
    room_id: str,
    seats: list[Seat],
    told: Told,
    turn: int,
    snapshot_of: Seat | None = None,
    watcher: Seat | None = None,
) -> None:
    """Hold every player's /state and /rounds (and one player's snapshot) against the log, and
    a spectator's (`watcher`) as someone with no seat and no team: `me` null."""
    log = await log_of(app, room_id)
    status, game = await stored(app, room_id)
    told.read(log)
    promised = PROMISES.get(rules.name, {})
    opened = None
    for event in log:
        kept = promised.get(event["type"], event["visibility"])
        assert event["visibility"] == kept, (
            f"the log shows {event['type']} to {event['visibility']}, not {kept}"
        )
        if event["type"] == "phase.started":
            data = event["data"]
            opened = phase_key(data["round"], data["phase"], data.get("attempt") or 1)
        if event["visibility"] == Visibility.sealed:
            assert event["audience"] == opened, (
                f"the log seals {event['type']} under {event['audience']} while {opened} was open"
            )
    for seat in seats:
        view = await state(client, room_id, seat)
        reads = Reads(told, rules, log, status, game, view["me"])
        reads.check_state(view, f"turn {turn}: {seat.nickname}'s /state")
        rounds = await client.get(f"/v1/rooms/{room_id}/rounds", headers=seat.auth)
        assert rounds.status_code == 200, rounds.text
        reads.check_rounds(rounds.json(), f"turn {turn}: {seat.nickname}'s /rounds")
        if seat is snapshot_of:
            reads.check_state(await snapshot(http, room_id, seat), f"turn {turn}: {seat.nickname}'s snapshot")
    if watcher is not None:
        view = await state(client, room_id, watcher)
        assert view["me"] is None, view["me"]
        assert view["options"] == [], view["options"]
        reads = Reads(told, rules, log, status, game, {"id": watcher.id, "team": None})
        reads.check_state(view, f"turn {turn}: the spectator's /state")
        rounds = await client.get(f"/v1/rooms/{room_id}/rounds", headers=watcher.auth)
        assert rounds.status_code == 200, rounds.text
        reads.check_rounds(rounds.json(), f"turn {turn}: the spectator's /rounds")
        watched = await snapshot(http, room_id, watcher)
        assert watched["me"] is None, watched["me"]
        reads.check_state(watched, f"turn {turn}: the spectator's snapshot")


async def refuse(
    client: httpx.AsyncClient, room_id: str, seats: list[Seat], rng: random.Random
) -> tuple[Seat, dict[str, Any], dict[str, Any]]:
    """Send one action a random player is not offered; return who, what, and the problem."""
    seat = rng.choice(seats)
    options = [api.Option.model_validate(o) for o in (await state(client, room_id, seat))["options"]]
    bodies = [b for b in unlisted_bodies(options, [s.id for s in seats], str(uuid.uuid4())) if valid(b)]
    body = rng.choice(bodies)
    answer = await client.post(f"/v1/rooms/{room_id}/actions", headers=seat.auth, json=body)
    assert 400 <= answer.status_code < 500, f"{seat.nickname} was not offered {body}, yet: {answer.text}"
    problem: dict[str, Any] = answer.json()
    assert problem["status"] == answer.status_code, problem
    assert problem["code"], problem
    return seat, body, problem


def valid(body: dict[str, Any]) -> bool:
    try:
        ACTION.validate_python(body)
    except ValueError:
        return False
    return True


async def act(
    client: httpx.AsyncClient,
    room_id: str,
    seats: list[Seat],
    rng: random.Random,
    turn: int,
    halfway: Callable[[], Awaitable[None]],
) -> None:
    """Let everyone offered an option now take one (in a random order), from their options only;
    halfway through, while the phase is still open (a vote sealed, a choice made), look again."""
    for n, seat in enumerate(rng.sample(seats, len(seats))):
        if n == len(seats) // 2:
            await halfway()
        options = (await state(client, room_id, seat))["options"]
        if not options:
            continue
        bodies = list(
            listed_bodies(
                api.Option.model_validate(options[0] if turn >= RANDOM_TURNS else rng.choice(options))
            )
        )
        body = bodies[0] if turn >= RANDOM_TURNS else rng.choice(bodies)
        answer = await client.post(f"/v1/rooms/{room_id}/actions", headers=seat.auth, json=body)
        assert answer.status_code == 201, f"{seat.nickname} was offered {body}, yet: {answer.text}"


def players_for(rules: Ruleset[Any, Any]) -> int:
    """Return a short game's player count: a little over the least (mafia: a doctor and a detective)."""
    low, high = player_bounds(rules)
    return min(low + 2, high)


@pytest.mark.parametrize("name", sorted(RULESETS))
async def test_a_game_over_http_shows_each_player_only_what_they_may_see(
    name: str, client: httpx.AsyncClient, app: FastAPI
) -> None:
    await play_over_http(RULESETS[name], client, app)


# Broken copies a game over HTTP catches on its own: a vote the log shows as cast, a vote
# sealed under another phase's key, roles /state shows that no event told, an option the
# server refuses.
CAUGHT_OVER_HTTP = {
    "approve votes shown": "the log shows approval.cast to room",
    "approve votes sealed too short": "the log seals approval.cast under",
    "town sees every role": "/state shows the roles",
    "fail offered to crew": "was offered",
}


@pytest.mark.parametrize("case", sorted(CAUGHT_OVER_HTTP))
async def test_a_broken_copy_is_caught_over_http(
    case: str, client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = BROKEN[case]
    monkeypatch.setitem(registry.RULESETS, broken.name, broken)  # what the server plays
    with pytest.raises(AssertionError, match=re.escape(CAUGHT_OVER_HTTP[case])):
        await play_over_http(broken, client, app)


async def play_over_http(rules: Ruleset[Any, Any], client: httpx.AsyncClient, app: FastAPI) -> None:
    """Play one game of a ruleset over HTTP with every player streaming, checking every
    player's reads as it goes, their streams and replays at the end, and every refusal."""
    name = rules.name
    room_id, seats = await new_room(client, players_for(rules), ruleset=name)
    watching = await client.post(f"/v1/rooms/{room_id}/spectators", json={"nickname": "Fan"})
    assert watching.status_code == 201, watching.text
    watcher = Seat(watching.json()["spectator"]["id"], watching.json()["token"], "Fan")
    rng, told = random.Random(SEED), Told(rules)
    refused = []
    # The server deals from its own random: seeded here, the deal (by seat) is the same each run.
    async with httpx.AsyncClient(
        transport=StreamingTransport(app), base_url="http://roundtable.test", timeout=30
    ) as http:
        live: dict[str, Log] = {seat.id: [] for seat in seats}
        live[watcher.id] = []
        streams = [
            asyncio.create_task(follow(http, room_id, seat, live[seat.id])) for seat in [*seats, watcher]
        ]
        with mock.patch.object(service, "_rng", random.Random(SEED)):
            await start(client, room_id, seats)
        for turn in range(MAX_TURNS):
            await check_reads(
                client, http, app, rules, room_id, seats, told, turn, seats[turn % len(seats)], watcher
            )
            room = (await state(client, room_id, seats[0]))["room"]
            if room["status"] == "finished":
                break
            refused.append(await refuse(client, room_id, seats, rng))

            async def halfway(turn: int = turn) -> None:
                await check_reads(client, http, app, rules, room_id, seats, told, turn, watcher=watcher)

            await act(client, room_id, seats, rng, turn, halfway)
            after = (await state(client, room_id, seats[0]))["room"]
            if after["status"] == "in_progress" and (after["round"], after["phase"]) == (
                room["round"],
                room["phase"],
            ):
                # Nobody had anything to do (a mafia day): the host moves on.
                moved = await client.post(
                    f"/v1/rooms/{room_id}/advance",
                    headers=seats[0].auth,
                    json={"round": room["round"], "phase": room["phase"]},
                )
                assert moved.status_code == 200, moved.text
        else:
            pytest.fail(f"the game did not end in {MAX_TURNS} turns")
        await asyncio.wait_for(asyncio.gather(*streams), 30)

        log = await log_of(app, room_id)
        finished = next(e["seq"] for e in log if e["type"] == "game.finished")
        for seat in seats:
            mine = expected_stream(log, seat.id, finished)
            assert [e["seq"] for e in live[seat.id]] == mine, f"{seat.nickname}'s live stream"
            replayed: Log = []
            await follow(http, room_id, seat, replayed)
            assert [e["seq"] for e in replayed] == mine, f"{seat.nickname}'s replay"
            assert replayed == live[seat.id]

        # The spectator's stream, live and replayed, is what every player's stream carries and
        # only what was said to the room.
        watched = expected_spectator_stream(log, watcher.id, [seat.id for seat in seats], finished)
        assert [e["seq"] for e in live[watcher.id]] == watched, "the spectator's live stream"
        replayed = []
        await follow(http, room_id, watcher, replayed)
        assert replayed == live[watcher.id], "the spectator's replay"

    # A refusal tells nothing the refused player may not know: no other player, no role but theirs.
    truth = {p["id"]: p for p in next(e["data"] for e in log if e["type"] == "game.finished")["players"]}
    words = {p[k] for p in truth.values() for k in ("role", "team")}
    for seat, body, problem in refused:
        me = truth[seat.id]
        sent = set(UUID.findall(str(body)))
        named = set(UUID.findall(str(problem))) - sent - {seat.id, room_id}
        assert not named, f"{seat.nickname} sent {body} and was told of {named}: {problem}"
        for word in words - {me["role"], me["team"], name}:
            assert not re.search(rf"\b{word}\b", str(problem), re.IGNORECASE), (
                f"{seat.nickname} ({me['role']}) sent {body} and was told of a {word}: {problem}"
            )
