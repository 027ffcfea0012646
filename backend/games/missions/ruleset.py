"""Missions behind the platform's protocol: its settings, actions, events, rows and views.

Who sees what: roles privately (spies see spies), proposals and results to everyone, approve
votes sealed until their phase closes (then every vote at once, in `approval.closed`), and
each member's mission choice to nobody, ever: only the count of fails is told.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from backend.contract import api, events
from backend.games import protocol
from backend.games.missions import rules
from backend.games.missions.rules import Fact, Game
from backend.games.protocol import (
    EVERYONE,
    NOBODY,
    Audience,
    Chatter,
    Deadline,
    Emit,
    Position,
    SeatState,
    View,
)

APPROVE, REJECT = api.ApprovalChoice.approve.value, api.ApprovalChoice.reject.value
SUCCESS, FAIL = api.MissionChoice.success.value, api.MissionChoice.fail.value


def _ids(values: Sequence[str]) -> list[uuid.UUID]:
    return [uuid.UUID(v) for v in values]


class Missions:
    """The missions ruleset (docs/games.md "Missions")."""

    name = "missions"
    phases: tuple[str, ...] = tuple(p.value for p in rules.Phase)
    settings_model: type[BaseModel] = api.MissionsSettings
    settings_input: type[BaseModel] = api.MissionsSettingsInput
    defaults: Mapping[str, Any] = {
        "max_players": 10,
        "propose_seconds": 90,
        "approve_seconds": 45,
        "mission_seconds": 45,
        "private": False,
    }

    def check_settings(self, settings: Mapping[str, Any], player_count: int) -> None:
        """Nothing beyond the contract's bounds: the player count is checked at the start."""

    def phase_seconds(self, settings: Mapping[str, Any], phase: str) -> int:
        return int(settings[f"{phase}_seconds"])

    def setup(
        self, player_ids: Sequence[str], settings: Mapping[str, Any], rng: random.Random
    ) -> tuple[Game, list[Fact], BaseModel | None]:
        rules.check_players(len(player_ids))
        game, facts = rules.setup(player_ids, rng)
        return game, facts, None

    def action(self, body: BaseModel) -> rules.Action:
        match body:
            case api.ProposeTeamAction(player_ids=player_ids):
                return rules.Propose(tuple(str(p) for p in player_ids))
            case api.ApproveTeamAction(choice=choice):
                return rules.Approve(choice is api.ApprovalChoice.approve)
            case api.MissionChoiceAction(choice=choice):
                return rules.Choose(choice is api.MissionChoice.success)
        kind = getattr(body, "type", "?")
        raise rules.CannotAct(
            f"A missions game has no `{kind}` action; it has `propose`, `approve`, `mission`."
        )

    def apply(self, state: Game, actor_id: str, action: rules.Action) -> tuple[Game, list[Fact]]:
        return rules.apply(state, actor_id, action)

    def on_deadline(self, state: Game) -> tuple[Game, list[Fact]]:
        return rules.on_deadline(state)

    def options(self, state: Game, player_id: str) -> list[api.Option]:
        return [
            api.Option(
                type=api.ActionType(o.type),
                vote_action=None,
                targets=_ids(o.targets),
                pick=o.pick,
                abstain=False,
                choices=list(o.choices),
            )
            for o in rules.options(state, player_id)
        ]

    def audience(self, fact: Fact) -> Audience:
        match fact:
            case rules.RoleDealt(player_id=player_id):
                return protocol.player(player_id)
            case rules.ApprovalCast(round=round_, attempt=attempt):
                return protocol.sealed(round_, rules.Phase.approve.value, attempt)
            case rules.MissionChosen():
                return NOBODY
        return EVERYONE

    def to_events(self, fact: Fact, deadline: Deadline) -> list[Emit]:
        match fact:
            case rules.RoleDealt(player_id=pid, role=role, teammates=teammates):
                dealt = events.RoleAssignedData(
                    player_id=uuid.UUID(pid),
                    role=api.Role(role.value),
                    team=api.Team(rules.team_of(role).value),
                    teammates=_ids(teammates),
                )
                return [Emit("role.assigned", dealt)]
            case rules.LeaderChosen(round=round_, attempt=attempt, leader_id=leader):
                chosen = events.LeaderChangedData(round=round_, attempt=attempt, leader_id=uuid.UUID(leader))
                return [Emit("leader.changed", chosen)]
            case rules.PhaseBegan(round=round_, phase=phase, attempt=attempt):
                started = events.PhaseStartedData(
                    round=round_, phase=api.Phase(phase.value), ends_at=deadline(phase.value)
                )
                if phase is not rules.Phase.mission:
                    started.attempt = attempt
                return [Emit("phase.started", started)]
            case rules.TeamProposed(round=round_, attempt=attempt, leader_id=leader, player_ids=team):
                proposed = events.TeamProposedData(
                    round=round_, attempt=attempt, leader_id=uuid.UUID(leader), player_ids=_ids(team)
                )
                return [Emit("team.proposed", proposed)]
            case rules.ApprovalCast(round=round_, attempt=attempt, voter_id=voter, approve=approve):
                cast = events.ApprovalCastData(
                    round=round_,
                    attempt=attempt,
                    voter_id=uuid.UUID(voter),
                    choice=api.ApprovalChoice(APPROVE if approve else REJECT),
                )
                return [Emit("approval.cast", cast)]
            case rules.ApprovalClosed(
                round=round_, attempt=attempt, votes=votes, approved=approved, rejections=rejections
            ):
                closed = events.ApprovalClosedData(
                    round=round_,
                    attempt=attempt,
                    approved=approved,
                    rejections=rejections,
                    votes=[
                        api.ApprovalVote(
                            voter_id=uuid.UUID(v), choice=api.ApprovalChoice(APPROVE if yes else REJECT)
                        )
                        for v, yes in votes
                    ],
                )
                return [Emit("approval.closed", closed)]
            case rules.MissionChosen(round=round_, player_id=pid, success=success):
                chosen_ = events.MissionChosenData(
                    round=round_,
                    player_id=uuid.UUID(pid),
                    choice=api.MissionChoice(SUCCESS if success else FAIL),
                )
                return [Emit("mission.chosen", chosen_)]
            case rules.MissionClosed(round=round_, team=team, fails=fails, succeeded=succeeded):
                over = events.MissionClosedData(
                    round=round_, team=_ids(team), fails=fails, succeeded=succeeded
                )
                return [Emit("mission.closed", over)]
        return []  # Finished is the platform's game.finished

    def record(self, fact: Fact) -> protocol.Record | None:
        match fact:
            case rules.ApprovalCast(round=round_, attempt=attempt, voter_id=voter, approve=approve):
                choice = APPROVE if approve else REJECT
                return protocol.VoteRecord(round_, "approve", attempt, "approve", voter, choice=choice)
            case rules.MissionChosen(round=round_, player_id=pid, success=success):
                return protocol.VoteRecord(
                    round_, "mission", 1, "mission", pid, choice=SUCCESS if success else FAIL
                )
            case rules.TeamProposed(round=round_, attempt=attempt, leader_id=leader, player_ids=team):
                proposal = {"leader_id": leader, "player_ids": list(team)}
                return protocol.ResultRecord(round_, "propose", attempt, details={"proposal": proposal})
            case rules.ApprovalClosed(round=round_, attempt=attempt, votes=votes, approved=approved):
                tally = [{"choice": APPROVE, "votes": sum(1 for _, yes in votes if yes)}]
                return protocol.ResultRecord(
                    round_, "approve", attempt, tally, details={"approved": approved}
                )
            case rules.MissionClosed(round=round_, fails=fails, succeeded=succeeded):
                return protocol.ResultRecord(
                    round_, "mission", 1, details={"fails": fails, "succeeded": succeeded}
                )
        return None

    def view(self, state: Game, viewer_id: str) -> View:
        me = state.seat(viewer_id)
        spy = me is not None and me.role is rules.Role.spy
        roles = frozenset(
            s.player_id
            for s in state.seats
            if s.player_id == viewer_id or state.finished or (spy and s.role is rules.Role.spy)
        )
        teammates = tuple(
            s.player_id for s in state.seats if spy and s.role is rules.Role.spy and s is not me
        )
        board = api.MissionsBoard(
            ruleset="missions",
            leader_player_id=uuid.UUID(state.leader_id),
            attempt=state.attempt,
            team_size=state.team_size,
            team_sizes=list(rules.TEAM_SIZES[len(state.seats)]),
            proposal=_ids(state.proposal) if state.proposal is not None else None,
            rejections=state.rejections,
            missions=[
                api.MissionResult(round=r.round, team=_ids(r.team), fails=r.fails, succeeded=r.succeeded)
                for r in state.results
            ],
        )
        return View(roles=roles, teammates=teammates, board=board)

    def position(self, state: Game) -> Position:
        phase = state.phase.value if state.phase else None
        # A mission follows its approved proposal: one opening per round, whatever the attempt.
        attempt = state.attempt if state.phase in (rules.Phase.propose, rules.Phase.approve) else 1
        return Position(state.round, phase, attempt, state.winner.value if state.winner else None)

    def seats(self, state: Game) -> Sequence[SeatState]:
        return [SeatState(s.player_id, s.role.value, s.team.value) for s in state.seats]

    def chat_channel(self, chatter: Chatter) -> tuple[api.ChatChannel, Audience]:
        return api.ChatChannel.room, EVERYONE  # no private channel in missions

    def dump(self, state: Game) -> dict[str, Any]:
        return rules.dump(state)

    def load(self, data: Mapping[str, Any]) -> Game:
        return rules.load(data)


RULESET = Missions()
