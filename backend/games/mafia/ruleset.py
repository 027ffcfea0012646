"""Mafia behind the platform's protocol: its settings, actions, events, rows and views."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from backend.contract import api, events
from backend.domain import lobby
from backend.games import protocol
from backend.games.mafia import rules
from backend.games.mafia.rules import Fact, Game
from backend.games.protocol import EVERYONE, Audience, Chatter, Deadline, Emit, Position, SeatState, View


def _id(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value is not None else None


class Mafia:
    """The mafia ruleset (docs/games.md "Mafia")."""

    name = "mafia"
    phases: tuple[str, ...] = tuple(p.value for p in rules.Phase)
    settings_model: type[BaseModel] = api.MafiaSettings
    settings_input: type[BaseModel] = api.MafiaSettingsInput
    defaults: Mapping[str, Any] = {
        "max_players": 10,
        "roles": None,
        "night_seconds": 60,
        "day_seconds": 120,
        "vote_seconds": 60,
        "reveal_on_death": True,
        "private": False,
    }
    min_players, max_players = rules.MIN_PLAYERS, rules.MAX_PLAYERS

    def check_settings(self, settings: Mapping[str, Any], player_count: int) -> None:
        """Nothing beyond the contract's bounds: the deal is checked when the game starts."""

    def phase_seconds(self, settings: Mapping[str, Any], phase: str) -> int:
        return int(settings[f"{phase}_seconds"])

    def setup(
        self, player_ids: Sequence[str], settings: Mapping[str, Any], rng: random.Random
    ) -> tuple[Game, list[Fact], BaseModel | None]:
        counts = settings.get("roles") or rules.default_roles(len(player_ids))
        reveal = bool(settings.get("reveal_on_death", True))
        game, facts = rules.start(player_ids, counts, reveal_on_death=reveal, rng=rng)
        return game, facts, api.RoleCounts.model_validate(counts)

    def action(self, body: BaseModel) -> str | None:
        if not isinstance(body, api.CastVoteAction):
            raise rules.CannotAct(
                f"A mafia game has no `{getattr(body, 'type', '?')}` action; it has `vote`."
            )
        return str(body.target_player_id) if body.target_player_id is not None else None

    def apply(self, state: Game, actor_id: str, action: str | None) -> tuple[Game, list[Fact]]:
        voted, facts = rules.vote(state, actor_id, action)
        if rules.everyone_acted(voted):
            after, more = rules.advance(voted)
            return after, facts + more
        return voted, facts

    def on_deadline(self, state: Game) -> tuple[Game, list[Fact]]:
        return rules.advance(state)

    def options(self, state: Game, player_id: str) -> list[api.Option]:
        seat = state.seat(player_id)
        action = rules.action_of(state, seat) if seat is not None else None
        if seat is None or action is None:
            return []
        targets = [uuid.UUID(t) for t in rules.allowed_targets(state, seat, action)]
        return [
            api.Option(
                type=api.ActionType.vote,
                vote_action=api.VoteAction(action.value),
                targets=targets,
                pick=1,
                abstain=True,
                choices=[],
            )
        ]

    def audience(self, fact: Fact) -> Audience:
        return rules.audience_of(fact)

    def to_events(self, fact: Fact, deadline: Deadline) -> list[Emit]:
        match fact:
            case rules.RoleDealt(player_id=pid, role=role, teammates=teammates):
                dealt = events.RoleAssignedData(
                    player_id=uuid.UUID(pid),
                    role=api.Role(role.value),
                    team=api.Team(rules.team_of(role).value),
                    teammates=[uuid.UUID(t) for t in teammates],
                )
                return [Emit("role.assigned", dealt)]
            case rules.PhaseBegan(round=round_, phase=phase, killed_player_id=killed):
                started = events.PhaseStartedData(
                    round=round_, phase=api.Phase(phase.value), ends_at=deadline(phase.value)
                )
                if phase is rules.Phase.day:
                    started.killed_player_id = _id(killed)
                return [Emit("phase.started", started)]
            case rules.VoteCast(round=round_, phase=phase, action=action, voter_id=voter, target_id=target):
                cast = events.VoteCastData(
                    round=round_,
                    phase=api.Phase(phase.value),
                    action=api.VoteAction(action.value),
                    voter_id=uuid.UUID(voter),
                    target_player_id=_id(target),
                )
                return [Emit("vote.cast", cast)]
            case rules.VoteClosed(
                round=round_, phase=phase, action=action, tally=tally, eliminated_player_id=out
            ):
                closed = events.VoteClosedData(
                    round=round_,
                    phase=api.Phase(phase.value),
                    action=api.VoteAction(action.value),
                    tally=[api.TallyEntry(target_player_id=_id(t), votes=n) for t, n in tally],
                    eliminated_player_id=_id(out),
                )
                return [Emit("vote.closed", closed)]
            case rules.Investigated(round=round_, detective_id=detective, target_id=target, team=team):
                answer = events.NightResultData(
                    round=round_,
                    detective_id=uuid.UUID(detective),
                    target_player_id=uuid.UUID(target),
                    team=api.Team(team.value),
                )
                return [Emit("night.result", answer)]
            case rules.Eliminated(round=round_, player_id=pid, cause=cause, role=role, revealed=revealed):
                gone = events.PlayerEliminatedData(
                    round=round_,
                    player_id=uuid.UUID(pid),
                    cause=events.EliminationCause(cause),
                    role=api.Role(role.value) if revealed else None,
                )
                return [Emit("player.eliminated", gone)]
        return []  # Protected is kept as a row only; Finished is the platform's game.finished

    def record(self, fact: Fact) -> protocol.Record | None:
        match fact:
            case rules.VoteCast(round=round_, phase=phase, action=action, voter_id=voter, target_id=target):
                return protocol.VoteRecord(round_, phase.value, 1, action.value, voter, target)
            case rules.VoteClosed(round=round_, phase=phase, tally=tally, eliminated_player_id=out):
                entries = [{"target_player_id": t, "votes": n} for t, n in tally]
                return protocol.ResultRecord(round_, phase.value, 1, entries, out)
            case rules.Investigated(round=round_, detective_id=detective, target_id=target, team=team):
                found = {"detective_id": detective, "target_player_id": target, "team": team.value}
                return protocol.ResultRecord(round_, "night", 1, details={"investigations": [found]})
            case rules.Protected(round=round_, doctor_id=doctor, target_id=target):
                kept = {"doctor_id": doctor, "target_player_id": target}
                return protocol.ResultRecord(round_, "night", 1, details={"protections": [kept]})
        return None

    def view(self, state: Game, viewer_id: str) -> View:
        me = state.seat(viewer_id)
        team = me.team.value if me is not None else None
        roles = frozenset(s.player_id for s in state.seats if rules.may_see_role(viewer_id, team, s, state))
        teammates: tuple[str, ...] = ()
        if me is not None and me.team is rules.Team.mafia:
            teammates = tuple(s.player_id for s in state.seats if s.team is me.team and s is not me)
        return View(roles=roles, teammates=teammates)

    def position(self, state: Game) -> Position:
        return Position(
            state.round,
            state.phase.value if state.phase else None,
            1,
            state.winner.value if state.winner else None,
        )

    def seats(self, state: Game) -> Sequence[SeatState]:
        return [SeatState(s.player_id, s.role.value, s.team.value, s.alive) for s in state.seats]

    def chat_channel(self, chatter: Chatter) -> tuple[api.ChatChannel, Audience]:
        if not chatter.alive:
            raise rules.PlayerDead("Dead players watch; they do not talk while the game runs.")
        if chatter.phase == rules.Phase.night.value:
            if chatter.team != rules.Team.mafia.value:
                raise lobby.ChatClosed("It is night: only the mafia talk, among themselves.")
            return api.ChatChannel.mafia, protocol.team(rules.Team.mafia.value)
        return api.ChatChannel.room, EVERYONE

    def dump(self, state: Game) -> dict[str, Any]:
        return rules.dump(state)

    def load(self, data: Mapping[str, Any]) -> Game:
        return rules.load(data)


RULESET = Mafia()
