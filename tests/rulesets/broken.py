"""Deliberately broken copies of the real rulesets, each the real one with one method
overridden, so the conformance suite can be shown to catch what it is meant to catch."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from backend.contract import api
from backend.games import protocol
from backend.games.mafia import rules as mafia
from backend.games.mafia.ruleset import RULESET as MAFIA
from backend.games.missions import rules as missions
from backend.games.missions.ruleset import RULESET as MISSIONS
from backend.games.protocol import (
    EVERYONE,
    Audience,
    Chatter,
    Deadline,
    Emit,
    Position,
    Ruleset,
    SeatState,
    View,
)


class Delegate:
    """A ruleset that passes every call to a real one; a broken copy overrides one method."""

    def __init__(self, inner: Ruleset[Any, Any]) -> None:
        self.inner = inner
        self.name = inner.name
        self.phases = inner.phases
        self.settings_model = inner.settings_model
        self.settings_input = inner.settings_input
        self.defaults = inner.defaults

    def check_settings(self, settings: Mapping[str, Any], player_count: int) -> None:
        self.inner.check_settings(settings, player_count)

    def phase_seconds(self, settings: Mapping[str, Any], phase: str) -> int:
        return self.inner.phase_seconds(settings, phase)

    def setup(
        self, player_ids: Sequence[str], settings: Mapping[str, Any], rng: random.Random
    ) -> tuple[Any, list[Any], BaseModel | None]:
        return self.inner.setup(player_ids, settings, rng)

    def action(self, body: BaseModel) -> Any:
        return self.inner.action(body)

    def apply(self, state: Any, actor_id: str, action: Any) -> tuple[Any, list[Any]]:
        return self.inner.apply(state, actor_id, action)

    def on_deadline(self, state: Any) -> tuple[Any, list[Any]]:
        return self.inner.on_deadline(state)

    def options(self, state: Any, player_id: str) -> list[api.Option]:
        return self.inner.options(state, player_id)

    def audience(self, fact: Any) -> Audience:
        return self.inner.audience(fact)

    def to_events(self, fact: Any, deadline: Deadline) -> list[Emit]:
        return self.inner.to_events(fact, deadline)

    def record(self, fact: Any) -> protocol.Record | None:
        return self.inner.record(fact)

    def view(self, state: Any, viewer_id: str) -> View:
        return self.inner.view(state, viewer_id)

    def position(self, state: Any) -> Position:
        return self.inner.position(state)

    def seats(self, state: Any) -> Sequence[SeatState]:
        return self.inner.seats(state)

    def chat_channel(self, chatter: Chatter) -> tuple[api.ChatChannel, Audience]:
        return self.inner.chat_channel(chatter)

    def dump(self, state: Any) -> dict[str, Any]:
        return self.inner.dump(state)

    def load(self, data: Mapping[str, Any]) -> Any:
        return self.inner.load(data)


class ApproveVotesShown(Delegate):
    """(a) Missions whose approve votes go to the room as cast instead of sealed."""

    def audience(self, fact: Any) -> Audience:
        if isinstance(fact, missions.ApprovalCast):
            return EVERYONE
        return self.inner.audience(fact)


class ApproveVotesSealedTooShort(Delegate):
    """(a') Missions whose approve votes are sealed under the next attempt's key: history
    shows them while their own phase is still open."""

    def audience(self, fact: Any) -> Audience:
        if isinstance(fact, missions.ApprovalCast):
            return protocol.sealed(fact.round, missions.Phase.approve.value, fact.attempt + 1)
        return self.inner.audience(fact)


class MissionChoicesShown(Delegate):
    """(b) Missions whose members' choices go to the room."""

    def audience(self, fact: Any) -> Audience:
        if isinstance(fact, missions.MissionChosen):
            return EVERYONE
        return self.inner.audience(fact)


class FailersNamed(Delegate):
    """(b') Missions whose `mission.closed` lists the team with who failed first: only the
    count is told outright, yet the order names them."""

    def apply(self, state: Any, actor_id: str, action: Any) -> tuple[Any, list[Any]]:
        after, facts = self.inner.apply(state, actor_id, action)
        choices = dict(state.choices)
        if isinstance(action, missions.Choose):
            choices[actor_id] = action.success
        return after, _failers_first(facts, choices)

    def on_deadline(self, state: Any) -> tuple[Any, list[Any]]:
        after, facts = self.inner.on_deadline(state)
        return after, _failers_first(facts, dict(state.choices))


def _failers_first(facts: list[Any], choices: Mapping[str, bool]) -> list[Any]:
    def ordered(fact: Any) -> Any:
        if isinstance(fact, missions.MissionClosed):
            return replace(fact, team=tuple(sorted(fact.team, key=lambda pid: choices.get(pid, True))))
        return fact

    return [ordered(f) for f in facts]


class FailOfferedToCrew(Delegate):
    """(c) Missions offering `fail` to every team member, crew included (apply refuses it)."""

    def options(self, state: Any, player_id: str) -> list[api.Option]:
        return [
            o.model_copy(update={"choices": ["success", "fail"]}) if o.type is api.ActionType.mission else o
            for o in self.inner.options(state, player_id)
        ]


class DeadTargetsOffered(Delegate):
    """(c') Mafia offering the dead as targets too."""

    def options(self, state: Any, player_id: str) -> list[api.Option]:
        dead = [uuid.UUID(s.player_id) for s in state.seats if not s.alive]
        return [
            o.model_copy(update={"targets": [*o.targets, *dead]})
            for o in self.inner.options(state, player_id)
        ]


class TownSeesEveryRole(Delegate):
    """(d) Mafia whose `view` shows a town player everyone's role."""

    def view(self, state: Any, viewer_id: str) -> View:
        seen = self.inner.view(state, viewer_id)
        me = state.seat(viewer_id)
        if me is not None and me.team is mafia.Team.town:
            return replace(seen, roles=frozenset(s.player_id for s in state.seats))
        return seen


class SpectatorsSeeEveryRole(Delegate):
    """(e) Mafia whose `view` of a viewer with no seat (a spectator) shows every role, and the
    mafia as teammates, as an operator's would; every player's own view stays right."""

    def view(self, state: Any, viewer_id: str) -> View:
        if state.seat(viewer_id) is not None:
            return self.inner.view(state, viewer_id)
        return View(
            roles=frozenset(s.player_id for s in state.seats),
            teammates=tuple(s.player_id for s in state.seats if s.team is mafia.Team.mafia),
        )


class Ballots(BaseModel):
    """A board listing the open phase's ballots. Not a contract board (mafia has none yet, and
    check_events refuses it too), but what a ruleset's own board could carry: check_spectator
    reads what a board tells, whatever its model."""

    ballots: list[dict[str, Any]]


class NightVotesOnSpectatorsBoard(Delegate):
    """(e') Mafia whose `view` of a viewer with no seat carries the open phase's ballots on a
    board: by night, the mafia's kill votes, which only the mafia may see."""

    def view(self, state: Any, viewer_id: str) -> View:
        seen = self.inner.view(state, viewer_id)
        if state.seat(viewer_id) is not None or state.phase is None:
            return seen
        ballots = [
            {
                "round": state.round,
                "phase": state.phase.value,
                "action": b.action.value,
                "voter_id": b.voter_id,
                "target_player_id": b.target_id,
            }
            for b in state.ballots.values()
        ]
        return replace(seen, board=Ballots(ballots=ballots))


BROKEN: dict[str, Ruleset[Any, Any]] = {
    "approve votes shown": ApproveVotesShown(MISSIONS),
    "approve votes sealed too short": ApproveVotesSealedTooShort(MISSIONS),
    "mission choices shown": MissionChoicesShown(MISSIONS),
    "failers named": FailersNamed(MISSIONS),
    "fail offered to crew": FailOfferedToCrew(MISSIONS),
    "dead targets offered": DeadTargetsOffered(MAFIA),
    "town sees every role": TownSeesEveryRole(MAFIA),
    "spectators see every role": SpectatorsSeeEveryRole(MAFIA),
    "night votes on the spectators' board": NightVotesOnSpectatorsBoard(MAFIA),
}
