"""`/rounds`: the game's history folded from the events a viewer may see, round by round and
phase by phase. It reads only events already filtered by the projection, so it cannot show
what the projection hides; it knows the contract's event types, never a ruleset."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from backend.contract import api

# The events history is made of (the rest, chat and presence, are not history).
TYPES = (
    "phase.started",
    "vote.cast",
    "vote.closed",
    "night.result",
    "player.eliminated",
    "team.proposed",
    "approval.cast",
    "approval.closed",
    "mission.closed",
    "game.finished",
)


class Event(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...


@dataclass
class _Phase:
    record: api.PhaseRecord
    round: int


def _record(phase: str, attempt: int) -> api.PhaseRecord:
    return api.PhaseRecord(
        phase=api.Phase(phase),
        attempt=attempt,
        closed=False,
        votes=[],
        tally=None,
        eliminated_player_id=None,
        investigations=[],
        proposal=None,
        approval=None,
        mission=None,
    )


def rounds(seen: Iterable[Event], game: int) -> api.RoundList:
    """Return the rounds of game number `game` the events tell (the events are that game's),
    oldest first; a phase is closed once a later one opened."""
    phases: list[_Phase] = []
    index: dict[tuple[int, str, int], _Phase] = {}

    def at(round_: int, phase: str, attempt: int = 1) -> api.PhaseRecord:
        key = (round_, phase, attempt)
        if key not in index:
            index[key] = _Phase(_record(phase, attempt), round_)
            phases.append(index[key])
        return index[key].record

    def last_of(round_: int) -> api.PhaseRecord | None:
        return next((p.record for p in reversed(phases) if p.round == round_), None)

    for event in seen:
        data = event.data
        match event.type:
            case "phase.started":
                for earlier in phases:
                    earlier.record.closed = True
                at(data["round"], data["phase"], data.get("attempt", 1))
            case "vote.cast":
                at(data["round"], data["phase"]).votes.append(api.Vote.model_validate(data))
            case "approval.cast":
                vote = api.Vote(
                    round=data["round"],
                    phase=api.Phase.approve,
                    action=api.VoteAction.approve,
                    voter_id=uuid.UUID(data["voter_id"]),
                    target_player_id=None,
                    choice=api.ApprovalChoice(data["choice"]),
                )
                at(data["round"], "approve", data["attempt"]).votes.append(vote)
            case "vote.closed":
                record = at(data["round"], data["phase"])
                record.tally = [api.TallyEntry.model_validate(t) for t in data["tally"]]
                out = data["eliminated_player_id"]
                record.eliminated_player_id = uuid.UUID(out) if out is not None else None
            case "night.result":
                # Told as the phase it belongs to closes, before the next one opens.
                closing = last_of(data["round"])
                if closing is not None:
                    found = {k: data[k] for k in ("detective_id", "target_player_id", "team")}
                    closing.investigations.append(api.Investigation.model_validate(found))
            case "player.eliminated":
                # Whoever may not see the closing tally still sees who died, in the phase that closed.
                closing = last_of(data["round"])
                if closing is not None:
                    closing.eliminated_player_id = uuid.UUID(data["player_id"])
            case "team.proposed":
                record = at(data["round"], "propose", data["attempt"])
                record.proposal = api.TeamProposal(
                    leader_player_id=data["leader_id"], player_ids=data["player_ids"]
                )
            case "approval.closed":
                record = at(data["round"], "approve", data["attempt"])
                record.approval = api.ApprovalResult.model_validate(
                    {k: data[k] for k in ("approved", "rejections", "votes")}
                )
            case "mission.closed":
                record = at(data["round"], "mission")
                record.mission = api.MissionResult.model_validate(data)
            case "game.finished":
                for earlier in phases:
                    earlier.record.closed = True
    by_round: dict[int, list[api.PhaseRecord]] = {}
    for phase in phases:
        by_round.setdefault(phase.round, []).append(phase.record)
    return api.RoundList(
        game=game, rounds=[api.Round(round=r, phases=p) for r, p in sorted(by_round.items())]
    )
