"""Missions played to the end by the SDK's bots over SSE against a served app.

Each bot records everything its player is shown: the snapshot, every streamed event, `/state`
and `/rounds` at every phase that opens, after each approve vote and after the end. From those
records alone the test checks what PRODUCT.md promises: the winner follows from the missions
and rejections the events told; a crew player never sees a spy; nobody ever learns who chose
`fail`; approve votes are sealed until their phase closes and shown to everyone after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from roundtable import Bot, RandomStrategy, RoomSession
from roundtable.cli import until_ready
from roundtable.contract import api, events
from roundtable.session import Action

SPIES = {5: 2, 10: 4}  # PRODUCT.md: 2 spies for 5-6 players, 4 for 10
TEAM_SIZES = {5: [2, 3, 2, 3, 3], 10: [3, 4, 4, 5, 5]}


@dataclass
class Look:
    """One thing a player was shown: its kind, its JSON, and whether the game was over by then."""

    kind: str  # snapshot, event, state, rounds
    data: dict[str, Any]
    over: bool
    # For a look taken while an approve phase was open after the bots' votes: (round, attempt).
    sealed: tuple[int, int] | None = None


@dataclass
class Table:
    """What the bots share in the test: the holdout, who voted in each approve phase."""

    players: list[uuid.UUID]
    holdout: uuid.UUID
    voted: dict[tuple[int, int], set[uuid.UUID]] = field(default_factory=dict)
    all_voted: dict[tuple[int, int], asyncio.Event] = field(default_factory=dict)

    def everyone_else_voted(self, key: tuple[int, int]) -> asyncio.Event:
        return self.all_voted.setdefault(key, asyncio.Event())

    def vote(self, key: tuple[int, int], player: uuid.UUID) -> None:
        voters = self.voted.setdefault(key, set())
        voters.add(player)
        if voters >= set(self.players) - {self.holdout}:
            self.everyone_else_voted(key).set()


class Witness(Bot):
    """A random bot that keeps every view of its player; the table's holdout votes last in each
    approve phase, so the others' looks at `/state` and `/rounds` happen while it is still open."""

    def __init__(self, session: RoomSession, seed: int, table: Table) -> None:
        super().__init__(session, RandomStrategy(seed))
        self.table = table
        self.looks: list[Look] = []
        self.over = False
        self.approvals: dict[tuple[int, int], api.ApprovalChoice] = {}

    async def handle(self, item: events.Snapshot | events.RoomEvent) -> None:
        if isinstance(item, events.GameFinishedEvent):
            self.over = True
        kind = "snapshot" if isinstance(item, events.Snapshot) else "event"
        self.looks.append(Look(kind, item.model_dump(mode="json"), self.over))
        await super().handle(item)
        if isinstance(item, events.PhaseStartedEvent):
            await self.look()

    async def look(self, sealed: tuple[int, int] | None = None) -> None:
        """Record `/state` and `/rounds` as this player sees them now."""
        state = await self.session.state()
        self.looks.append(Look("state", state.model_dump(mode="json"), self.over, sealed))
        rounds = await self.session.rounds()
        self.looks.append(Look("rounds", rounds.model_dump(mode="json"), self.over, sealed))

    async def on_options(self, options: list[api.Option]) -> None:
        v = self.view
        approving = any(o.type is api.ActionType.approve for o in options)
        key = (v.round, v.attempt or 0)
        first = approving and key not in self.approvals
        me = self.session.player_id
        if first and me == self.table.holdout:
            # The others vote and look first; a lapse (they never all vote) only weakens the check.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.table.everyone_else_voted(key).wait(), 20)
            await self.look(sealed=key)
        await super().on_options(options)
        if first and me != self.table.holdout:
            await self.look(sealed=key)
            self.table.vote(key, me)

    async def act(self, action: Action, attempts: int = 20) -> bool:
        key = (self.view.round, self.view.attempt or 0)
        taken = await super().act(action, attempts)
        if taken and isinstance(action, api.ApproveTeamAction):
            self.approvals[key] = action.choice
        return taken


def walk(value: Any) -> Iterator[dict[str, Any]]:
    """Yield every JSON object inside a value."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


async def play(server_url: str, count: int) -> tuple[list[Witness], list[api.Team]]:
    """Create a missions room of `count` bots, start it when every stream is open, play it out."""
    tag = uuid.uuid4().hex[:4]
    settings = api.MissionsSettingsInput(
        max_players=count, propose_seconds=10, approve_seconds=30, mission_seconds=10
    )
    host = await RoomSession.create(
        server_url, name=f"Missions {tag}", nickname=f"m{tag}-1", settings=settings
    )
    sessions = [host] + [
        await RoomSession.join(server_url, nickname=f"m{tag}-{i}", room_id=host.room_id)
        for i in range(2, count + 1)
    ]
    table = Table(players=[s.player_id for s in sessions], holdout=host.player_id)
    bots = [Witness(s, seed=100 * count + i, table=table) for i, s in enumerate(sessions)]
    try:
        games = [asyncio.create_task(bot.run()) for bot in bots]
        players: list[Bot] = [*bots]
        await until_ready(players, games)
        await host.start()
        async with asyncio.timeout(240):
            winners = await asyncio.gather(*games)
        for bot in bots:
            await bot.look()  # after the end
        return bots, winners
    finally:
        for s in sessions:
            await s.aclose()


def events_of(bot: Witness, type_: str) -> list[dict[str, Any]]:
    return [look.data for look in bot.looks if look.kind == "event" and look.data["type"] == type_]


def expected_winner(bot: Witness) -> str:
    """Return the winner the public results imply: 3 successes crew, 3 fails or 5 rejections spies."""
    successes = fails = 0
    for look in bot.looks:
        if look.kind != "event":
            continue
        kind, data = look.data["type"], look.data["data"]
        if kind == "approval.closed" and data["rejections"] == 5:
            return "spies"
        if kind == "mission.closed":
            successes += data["succeeded"]
            fails += not data["succeeded"]
            if successes == 3:
                return "crew"
            if fails == 3:
                return "spies"
    raise AssertionError("the game ended before the results decided it")


@pytest.mark.parametrize("count", [5, 10])
async def test_bots_play_missions_to_the_right_winner_and_nothing_hidden_leaks(
    server_url: str, count: int
) -> None:
    bots, winners = await play(server_url, count)
    finished = events_of(bots[0], "game.finished")
    assert len(finished) == 1
    roles = {uuid.UUID(p["id"]): p["role"] for p in finished[0]["data"]["players"]}
    spies = {pid for pid, role in roles.items() if role == "spy"}
    assert len(spies) == SPIES[count]
    assert set(roles.values()) == {"crew", "spy"}

    # The winner: the same for every bot, the one the events' results imply, the room's.
    winner = expected_winner(bots[0])
    assert {w.value for w in winners} == {winner}
    for bot in bots:
        assert expected_winner(bot) == winner
        assert [e["data"]["winner"] for e in events_of(bot, "game.finished")] == [winner]
    final_state = bots[0].looks[-2]
    assert final_state.kind == "state"
    assert final_state.data["room"]["winner"] == winner

    # The missions as everyone saw them: the round's team size, a fail only from a spy on the team.
    closed = events_of(bots[0], "mission.closed")
    for bot in bots:
        assert [e["data"] for e in events_of(bot, "mission.closed")] == [e["data"] for e in closed]
    for event in closed:
        data = event["data"]
        assert len(data["team"]) == TEAM_SIZES[count][data["round"] - 1]
        assert data["fails"] <= len(spies & {uuid.UUID(p) for p in data["team"]})
        needed = 2 if data["round"] == 4 and count >= 7 else 1
        assert data["succeeded"] == (data["fails"] < needed)
        assert set(data) == {"round", "team", "fails", "succeeded"}

    # A crew player's every view while the game ran shows no spy: no spy role or team anywhere,
    # nobody else's role at all, no teammates.
    crew = [bot for bot in bots if bot.session.player_id not in spies]
    assert len(crew) == count - SPIES[count]
    for bot in crew:
        me = str(bot.session.player_id)
        during = [look for look in bot.looks if not look.over]
        assert {look.kind for look in during} == {"snapshot", "event", "state", "rounds"}
        for look in during:
            text = json.dumps(look.data)
            assert '"spy"' not in text, (look.kind, text)
            assert '"spies"' not in text, (look.kind, text)
            for obj in walk(look.data):
                if "teammates" in obj:
                    assert obj["teammates"] == [], (look.kind, obj)
                if {"nickname", "seat", "role"} <= obj.keys() and obj["id"] != me:
                    assert (obj["role"], obj["team"]) == (None, None), (look.kind, obj)

    # Nobody ever learns who chose what on a mission: no mission.chosen reaches any stream, and
    # no view (after the end included: game.finished, /state, /rounds) has a mission choice.
    for bot in bots:
        assert not events_of(bot, "mission.chosen")
        for look in bot.looks:
            for obj in walk(look.data):
                assert obj.get("choice") not in ("success", "fail"), (look.kind, look.over, obj)
        final_rounds = bot.looks[-1]
        assert final_rounds.kind == "rounds"
        assert final_rounds.over
        missions = [
            record
            for r in final_rounds.data["rounds"]
            for record in r["phases"]
            if record["phase"] == "mission" and record["closed"]
        ]
        assert [(m["mission"]["round"], m["mission"]["fails"]) for m in missions] == [
            (e["data"]["round"], e["data"]["fails"]) for e in closed
        ]
        assert all(m["votes"] == [] for m in missions)

    # Approve votes are sealed: never streamed, absent from every look while their phase is
    # open (the others looked after voting, the holdout before), and shown to all once it closed.
    approvals = events_of(bots[0], "approval.closed")
    assert approvals
    for bot in bots:
        assert not events_of(bot, "approval.cast")
        assert [e["data"] for e in events_of(bot, "approval.closed")] == [e["data"] for e in approvals]
    revealed: dict[tuple[int, int], list[tuple[str, str]]] = {}
    for event in approvals:
        data = event["data"]
        key = (data["round"], data["attempt"])
        revealed[key] = [(v["voter_id"], v["choice"]) for v in data["votes"]]
        assert len(data["votes"]) == count
        cast = {str(bot.session.player_id): bot.approvals[key].value for bot in bots if key in bot.approvals}
        assert {voter: choice for voter, choice in revealed[key] if voter in cast} == cast
    sealed_looks = 0
    for bot in bots:
        for look in bot.looks:
            if look.sealed is None:
                continue
            round_, attempt = look.sealed
            if look.kind == "state":
                board = look.data["board"]
                if look.data["room"]["phase"] != "approve" or (
                    look.data["room"]["round"],
                    board["attempt"],
                ) != (
                    round_,
                    attempt,
                ):
                    continue  # the phase had closed by then (a lapse): nothing to check
                sealed_looks += 1
                shown = Counter(
                    (v["voter_id"], v["choice"])
                    for v in look.data["votes"]
                    if v["phase"] == "approve" and v["round"] == round_
                )
                earlier = Counter(
                    vote
                    for (r, a), votes in revealed.items()
                    if r == round_ and a < attempt
                    for vote in votes
                )
                assert not shown - earlier, (bot.session.player_id, look.sealed, shown)
            else:
                for r in look.data["rounds"]:
                    for record in r["phases"]:
                        if (r["round"], record["phase"], record["attempt"]) == (
                            round_,
                            "approve",
                            attempt,
                        ) and (not record["closed"]):
                            assert record["votes"] == [], record
                            assert record["approval"] is None, record
    assert sealed_looks >= count - 1  # at least one approve phase was seen open by every player
    for bot in bots:
        for r in bot.looks[-1].data["rounds"]:
            for record in r["phases"]:
                if record["phase"] != "approve" or not record["closed"]:
                    continue
                key = (r["round"], record["attempt"])
                assert [(v["voter_id"], v["choice"]) for v in record["approval"]["votes"]] == revealed[key]
                listed = {(v["voter_id"], v["choice"]) for v in record["votes"]}
                assert listed <= set(revealed[key])
                assert {voter for voter, _ in listed} == {
                    str(b.session.player_id) for b in bots if key in b.approvals
                }
