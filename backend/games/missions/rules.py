"""The missions ruleset as pure functions of (game, command): no I/O, no clock, no database.

A `Game` is immutable. Every command returns the new game and the facts it produced, or
raises a `RuleError` and leaves the game as it was. The adapter turns facts into contract
events and decides who sees each; the facts therefore carry all an event needs, and
`MissionClosed` carries only the count of fails, never who chose what.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from backend.games import errors

MIN_PLAYERS, MAX_PLAYERS = 5, 10
SPIES = {5: 2, 6: 2, 7: 3, 8: 3, 9: 3, 10: 4}
TEAM_SIZES = {
    5: (2, 3, 2, 3, 3),
    6: (2, 3, 4, 3, 4),
    7: (2, 3, 3, 4, 4),
    8: (3, 4, 4, 5, 5),
    9: (3, 4, 4, 5, 5),
    10: (3, 4, 4, 5, 5),
}
ROUNDS = 5
WINS_NEEDED = 3  # successful (or failed) missions that end the game
MAX_PROPOSALS = 5  # the 5th rejected proposal in one round: spies win


# The refusals every ruleset shares, named here as this ruleset's callers name them.
CannotAct = errors.CannotAct
GameNotInProgress = errors.GameNotInProgress
InvalidChoice = errors.InvalidChoice
InvalidTarget = errors.InvalidTarget
NotAPlayer = errors.NotAPlayer
NotEnoughPlayers = errors.NotEnoughPlayers


class Phase(StrEnum):
    """The phases of a round, in order."""

    propose = "propose"
    approve = "approve"
    mission = "mission"


class Role(StrEnum):
    """What a player is; the team follows from it."""

    crew = "crew"
    spy = "spy"


class Team(StrEnum):
    """Who wins together."""

    crew = "crew"
    spies = "spies"


def team_of(role: Role) -> Team:
    """Return the team a role plays for."""
    return Team.spies if role is Role.spy else Team.crew


def fails_needed(player_count: int, round_: int) -> int:
    """Return how many fails fail a mission: two in round 4 with 7 or more players, else one."""
    return 2 if round_ == 4 and player_count >= 7 else 1


@dataclass(frozen=True, slots=True)
class Seat:
    """A player of the game and their secret role."""

    player_id: str
    role: Role

    @property
    def team(self) -> Team:
        return team_of(self.role)


@dataclass(frozen=True, slots=True)
class MissionResult:
    """A finished mission: who went, how many failed it, and whether it succeeded."""

    round: int
    team: tuple[str, ...]
    fails: int
    succeeded: bool


@dataclass(frozen=True)
class Game:
    """The state of one game; `approvals` and `choices` hold each actor's last word in the open phase."""

    seats: tuple[Seat, ...]  # table order: leadership moves to the next seat
    round: int = 1
    phase: Phase | None = Phase.propose
    # The chances to propose in this round: rises on each rejection and on each lapsed propose
    # deadline, so it may pass MAX_PROPOSALS; `rejections` counts what ends the game at five.
    attempt: int = 1
    leader: int = 0
    proposal: tuple[str, ...] | None = None
    approvals: Mapping[str, bool] = field(default_factory=dict)
    choices: Mapping[str, bool] = field(default_factory=dict)
    results: tuple[MissionResult, ...] = ()
    winner: Team | None = None
    rejections: int = 0  # rejected proposals in this round

    def seat(self, player_id: str) -> Seat | None:
        """Return the player's seat, if they play."""
        return next((s for s in self.seats if s.player_id == player_id), None)

    @property
    def leader_id(self) -> str:
        return self.seats[self.leader].player_id

    @property
    def team_size(self) -> int:
        return TEAM_SIZES[len(self.seats)][self.round - 1]

    @property
    def finished(self) -> bool:
        return self.winner is not None


# The actions a player may take; the adapter builds them from request bodies.


@dataclass(frozen=True)
class Propose:
    player_ids: tuple[str, ...]


@dataclass(frozen=True)
class Approve:
    approve: bool


@dataclass(frozen=True)
class Choose:
    success: bool


Action = Propose | Approve | Choose


@dataclass(frozen=True, slots=True)
class Option:
    """An action a player may take now: its type, the targets to pick from, and the choices."""

    type: str
    targets: tuple[str, ...] = ()
    pick: int = 0
    choices: tuple[str, ...] = ()


# The facts a command produces; the adapter decides who sees each.


@dataclass(frozen=True, slots=True)
class RoleDealt:
    player_id: str
    role: Role
    teammates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LeaderChosen:
    round: int
    attempt: int
    leader_id: str


@dataclass(frozen=True, slots=True)
class PhaseBegan:
    round: int
    phase: Phase
    attempt: int


@dataclass(frozen=True, slots=True)
class TeamProposed:
    round: int
    attempt: int
    leader_id: str
    player_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ApprovalCast:
    """A sealed vote: shown to nobody until its approve phase closes."""

    round: int
    attempt: int
    voter_id: str
    approve: bool


@dataclass(frozen=True, slots=True)
class ApprovalClosed:
    """Every player's vote in seat order (missing: reject), the result, and the round's rejections."""

    round: int
    attempt: int
    votes: tuple[tuple[str, bool], ...]
    approved: bool
    rejections: int


@dataclass(frozen=True, slots=True)
class MissionChosen:
    """One member's mission choice: never shown to anyone, kept for replay and operators."""

    round: int
    player_id: str
    success: bool


@dataclass(frozen=True, slots=True)
class MissionClosed:
    """A mission's outcome: the count of fails only, never who failed."""

    round: int
    team: tuple[str, ...]
    fails: int
    succeeded: bool


@dataclass(frozen=True, slots=True)
class Finished:
    winner: Team
    reason: str  # "missions" or "rejections"


Fact = (
    RoleDealt
    | LeaderChosen
    | PhaseBegan
    | TeamProposed
    | ApprovalCast
    | ApprovalClosed
    | MissionChosen
    | MissionClosed
    | Finished
)


def check_players(player_count: int) -> None:
    """Refuse a player count the game cannot start with."""
    if not MIN_PLAYERS <= player_count <= MAX_PLAYERS:
        raise NotEnoughPlayers(
            f"A game needs {MIN_PLAYERS}–{MAX_PLAYERS} players; the room has {player_count}."
        )


def setup(player_ids: Sequence[str], rng: random.Random) -> tuple[Game, list[Fact]]:
    """Deal the roles at random, draw the first leader and open round 1's proposal."""
    check_players(len(player_ids))
    if len(set(player_ids)) != len(player_ids):
        raise ValueError("A player may hold only one seat.")
    n = len(player_ids)
    roles = [Role.spy] * SPIES[n] + [Role.crew] * (n - SPIES[n])
    rng.shuffle(roles)
    seats = tuple(Seat(pid, role) for pid, role in zip(player_ids, roles, strict=True))
    game = Game(seats=seats, leader=rng.randrange(n))
    spies = tuple(s.player_id for s in seats if s.role is Role.spy)
    facts: list[Fact] = [
        RoleDealt(
            s.player_id, s.role, tuple(p for p in spies if p != s.player_id) if s.role is Role.spy else ()
        )
        for s in seats
    ]
    facts += [LeaderChosen(1, 1, game.leader_id), PhaseBegan(1, Phase.propose, 1)]
    return game, facts


def options(game: Game, player_id: str) -> list[Option]:
    """Return the actions this player may take now; `apply` accepts exactly these."""
    seat = game.seat(player_id)
    if seat is None or game.finished:
        return []
    if game.phase is Phase.propose and player_id == game.leader_id and game.proposal is None:
        return [Option("propose", tuple(s.player_id for s in game.seats), game.team_size)]
    if game.phase is Phase.approve:
        return [Option("approve", choices=("approve", "reject"))]
    if game.phase is Phase.mission and game.proposal is not None and player_id in game.proposal:
        choices = ("success", "fail") if seat.role is Role.spy else ("success",)
        return [Option("mission", choices=choices)]
    return []


def apply(game: Game, actor_id: str, action: Action) -> tuple[Game, list[Fact]]:
    """Take one player's action; close the phase at once when everyone due has acted."""
    if game.finished or game.phase is None:
        raise GameNotInProgress("The game is not running.")
    seat = game.seat(actor_id)
    if seat is None:
        raise NotAPlayer("Only players dealt into the game may act.")
    match action:
        case Propose(player_ids=player_ids):
            return _propose(game, actor_id, tuple(player_ids))
        case Approve(approve=approve):
            if game.phase is not Phase.approve:
                raise CannotAct(f"There is no team to approve in the {game.phase.value} phase.")
            approvals = {**game.approvals, actor_id: approve}
            voted = replace(game, approvals=approvals)
            facts: list[Fact] = [ApprovalCast(game.round, game.attempt, actor_id, approve)]
            if len(approvals) < len(game.seats):
                return voted, facts
            closed, more = _close_approval(voted)
            return closed, facts + more
        case Choose(success=success):
            if game.phase is not Phase.mission or game.proposal is None:
                raise CannotAct(f"There is no mission to choose in the {game.phase.value} phase.")
            if actor_id not in game.proposal:
                raise CannotAct("Only the team's members choose the mission's outcome.")
            if not success and seat.role is not Role.spy:
                raise InvalidChoice("The crew may only choose success.")
            choices = {**game.choices, actor_id: success}
            chosen = replace(game, choices=choices)
            facts = [MissionChosen(game.round, actor_id, success)]
            if len(choices) < len(game.proposal):
                return chosen, facts
            closed, more = _close_mission(chosen)
            return closed, facts + more


def on_deadline(game: Game) -> tuple[Game, list[Fact]]:
    """Close the open phase as its deadline (or the host's advance) does."""
    if game.finished or game.phase is None:
        raise GameNotInProgress("The game is not running.")
    if game.phase is Phase.approve:
        return _close_approval(game)
    if game.phase is Phase.mission:
        return _close_mission(game)
    # PRODUCT says only "the next seat becomes leader" for a lapsed proposal: it is not a
    # rejected proposal, so it does not count toward the five; yet the attempt still rises,
    # so each propose phase that opens has its own (round, phase, attempt) for timers and events.
    return _pass_leadership(game, game.round, game.attempt + 1, rejections=game.rejections)


def _propose(game: Game, leader_id: str, player_ids: tuple[str, ...]) -> tuple[Game, list[Fact]]:
    if game.phase is not Phase.propose:
        raise CannotAct(f"Teams are proposed in the propose phase, not the {game.phase}.")
    if leader_id != game.leader_id:
        raise CannotAct("Only the leader proposes a team.")
    if game.proposal is not None:
        raise CannotAct("The leader has already proposed a team in this attempt.")
    if len(set(player_ids)) != len(player_ids):
        raise InvalidTarget("A team names each player once.")
    if any(game.seat(pid) is None for pid in player_ids):
        raise InvalidTarget("A team holds only players of this game.")
    if len(player_ids) != game.team_size:
        raise InvalidTarget(f"Round {game.round} needs a team of {game.team_size}, not {len(player_ids)}.")
    proposed = replace(game, phase=Phase.approve, proposal=player_ids, approvals={})
    return proposed, [
        TeamProposed(game.round, game.attempt, leader_id, player_ids),
        PhaseBegan(game.round, Phase.approve, game.attempt),
    ]


def _pass_leadership(game: Game, round_: int, attempt: int, *, rejections: int) -> tuple[Game, list[Fact]]:
    leader = (game.leader + 1) % len(game.seats)
    passed = replace(
        game,
        round=round_,
        phase=Phase.propose,
        attempt=attempt,
        leader=leader,
        proposal=None,
        approvals={},
        choices={},
        rejections=rejections,
    )
    return passed, [
        LeaderChosen(round_, attempt, passed.leader_id),
        PhaseBegan(round_, Phase.propose, attempt),
    ]


def _finish(game: Game, winner: Team, reason: str) -> tuple[Game, list[Fact]]:
    over = replace(game, phase=None, proposal=None, approvals={}, choices={}, winner=winner)
    return over, [Finished(winner, reason)]


def _close_approval(game: Game) -> tuple[Game, list[Fact]]:
    votes = tuple((s.player_id, game.approvals.get(s.player_id, False)) for s in game.seats)
    approves = sum(1 for _, yes in votes if yes)
    approved = 2 * approves > len(game.seats)
    rejections = game.rejections + (0 if approved else 1)
    closed: list[Fact] = [ApprovalClosed(game.round, game.attempt, votes, approved, rejections)]
    if approved:
        sent = replace(game, phase=Phase.mission, approvals={}, choices={})
        return sent, [*closed, PhaseBegan(game.round, Phase.mission, game.attempt)]
    if rejections >= MAX_PROPOSALS:
        over, facts = _finish(replace(game, rejections=rejections), Team.spies, "rejections")
        return over, closed + facts
    passed, facts = _pass_leadership(game, game.round, game.attempt + 1, rejections=rejections)
    return passed, closed + facts


def _close_mission(game: Game) -> tuple[Game, list[Fact]]:
    assert game.proposal is not None
    team = game.proposal
    fails = sum(1 for pid in team if not game.choices.get(pid, True))
    succeeded = fails < fails_needed(len(game.seats), game.round)
    result = MissionResult(game.round, team, fails, succeeded)
    results = (*game.results, result)
    done = replace(game, results=results)
    closed: list[Fact] = [MissionClosed(game.round, team, fails, succeeded)]
    if sum(1 for r in results if r.succeeded) >= WINS_NEEDED:
        over, facts = _finish(done, Team.crew, "missions")
        return over, closed + facts
    if sum(1 for r in results if not r.succeeded) >= WINS_NEEDED:
        over, facts = _finish(done, Team.spies, "missions")
        return over, closed + facts
    passed, facts = _pass_leadership(done, game.round + 1, 1, rejections=0)
    return passed, closed + facts


def dump(game: Game) -> dict[str, Any]:
    """Return the game as JSON-safe data (the platform stores it as JSONB)."""
    return {
        "seats": [{"player_id": s.player_id, "role": s.role.value} for s in game.seats],
        "round": game.round,
        "phase": game.phase.value if game.phase is not None else None,
        "attempt": game.attempt,
        "leader": game.leader,
        "proposal": list(game.proposal) if game.proposal is not None else None,
        "approvals": dict(game.approvals),
        "choices": dict(game.choices),
        "results": [
            {"round": r.round, "team": list(r.team), "fails": r.fails, "succeeded": r.succeeded}
            for r in game.results
        ],
        "winner": game.winner.value if game.winner is not None else None,
        "rejections": game.rejections,
    }


def load(data: Mapping[str, Any]) -> Game:
    """Return the game `dump` stored."""
    return Game(
        seats=tuple(Seat(str(s["player_id"]), Role(s["role"])) for s in data["seats"]),
        round=int(data["round"]),
        phase=Phase(data["phase"]) if data["phase"] is not None else None,
        attempt=int(data["attempt"]),
        leader=int(data["leader"]),
        proposal=tuple(str(p) for p in data["proposal"]) if data["proposal"] is not None else None,
        approvals={str(k): bool(v) for k, v in data["approvals"].items()},
        choices={str(k): bool(v) for k, v in data["choices"].items()},
        results=tuple(
            MissionResult(
                int(r["round"]), tuple(str(p) for p in r["team"]), int(r["fails"]), bool(r["succeeded"])
            )
            for r in data["results"]
        ),
        winner=Team(data["winner"]) if data["winner"] is not None else None,
        rejections=int(data.get("rejections", 0)),
    )
