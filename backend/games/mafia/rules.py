"""The mafia ruleset as pure functions of (game, command): no I/O, no clock, no database.

A `Game` is immutable. Every command returns the new game and the facts it produced, or
raises a `RuleError` and leaves the game as it was. `audience_of` says who may see each
fact; `backend.games.mafia.ruleset` puts these rules behind the platform's protocol.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from backend.domain.errors import RuleError
from backend.games import errors
from backend.games.protocol import EVERYONE, Audience, player, team

MIN_PLAYERS = 4
MAX_PLAYERS = 20


# The refusals every ruleset shares, named here as this ruleset's callers name them.
CannotAct = errors.CannotAct
GameNotInProgress = errors.GameNotInProgress
InvalidTarget = errors.InvalidTarget
NotAPlayer = errors.NotAPlayer
NotEnoughPlayers = errors.NotEnoughPlayers
PhaseClosed = errors.PhaseClosed


class Phase(StrEnum):
    """The phases of a round, in order."""

    night = "night"
    day = "day"
    vote = "vote"


class Role(StrEnum):
    """What a player is; the team follows from it."""

    mafia = "mafia"
    citizen = "citizen"
    doctor = "doctor"
    detective = "detective"


class Team(StrEnum):
    """Who wins together."""

    mafia = "mafia"
    town = "town"


class Action(StrEnum):
    """What a vote does: the role and phase decide it."""

    kill = "kill"
    protect = "protect"
    investigate = "investigate"
    eliminate = "eliminate"


def team_of(role: Role) -> Team:
    """Return the team a role plays for."""
    return Team.mafia if role is Role.mafia else Team.town


class InvalidRoles(RuleError):
    code = "invalid_roles"


class PlayerDead(RuleError):
    code = "player_dead"


@dataclass(frozen=True, slots=True)
class Seat:
    """A player of the game: their role, and whether they are still alive."""

    player_id: str
    role: Role
    alive: bool = True

    @property
    def team(self) -> Team:
        return team_of(self.role)


@dataclass(frozen=True, slots=True)
class Ballot:
    """A voter's current choice in the open phase; `target_id` None abstains."""

    voter_id: str
    action: Action
    target_id: str | None


@dataclass(frozen=True)
class Game:
    """The state of one game. `ballots` holds each voter's final ballot in the open phase."""

    seats: tuple[Seat, ...]
    round: int = 1
    phase: Phase | None = Phase.night
    ballots: Mapping[str, Ballot] = field(default_factory=dict)
    winner: Team | None = None
    reveal_on_death: bool = True

    def seat(self, player_id: str) -> Seat | None:
        """Return the player's seat, if they play."""
        return next((s for s in self.seats if s.player_id == player_id), None)

    def alive(self) -> list[Seat]:
        """Return the living players, in seat order."""
        return [s for s in self.seats if s.alive]

    @property
    def finished(self) -> bool:
        return self.winner is not None


# The facts a command produces; `audience_of` says who sees each.


@dataclass(frozen=True, slots=True)
class RoleDealt:
    player_id: str
    role: Role
    teammates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PhaseBegan:
    round: int
    phase: Phase
    # Day only: who the night killed (None: nobody died).
    killed_player_id: str | None = None


@dataclass(frozen=True, slots=True)
class VoteCast:
    round: int
    phase: Phase
    action: Action
    voter_id: str
    target_id: str | None


@dataclass(frozen=True, slots=True)
class VoteClosed:
    round: int
    phase: Phase
    action: Action
    tally: tuple[tuple[str | None, int], ...]
    eliminated_player_id: str | None


@dataclass(frozen=True, slots=True)
class Investigated:
    round: int
    detective_id: str
    target_id: str
    team: Team


@dataclass(frozen=True, slots=True)
class Protected:
    round: int
    doctor_id: str
    target_id: str


@dataclass(frozen=True, slots=True)
class Eliminated:
    round: int
    player_id: str
    cause: str  # "killed" at night, "voted" by day
    role: Role
    revealed: bool


@dataclass(frozen=True, slots=True)
class Finished:
    winner: Team


Fact = RoleDealt | PhaseBegan | VoteCast | VoteClosed | Investigated | Protected | Eliminated | Finished


def audience_of(fact: Fact) -> Audience:
    """Return who may see a fact while the game runs: the room, one team, or one player."""
    match fact:
        case RoleDealt(player_id=player_id):
            return player(player_id)
        case VoteCast(action=Action.kill) | VoteClosed(action=Action.kill):
            return team(Team.mafia.value)
        case VoteCast(action=Action.protect | Action.investigate, voter_id=voter_id):
            return player(voter_id)
        case Investigated(detective_id=detective_id):
            return player(detective_id)
        case Protected(doctor_id=doctor_id):
            return player(doctor_id)
        case _:
            return EVERYONE


def default_roles(player_count: int) -> dict[str, int]:
    """Return the default deal: mafia = max(1, n // 4), a doctor from 5, a detective from 6."""
    return {
        "mafia": max(1, player_count // 4),
        "doctor": 1 if player_count >= 5 else 0,
        "detective": 1 if player_count >= 6 else 0,
    }


def check_roles(player_count: int, counts: Mapping[str, int]) -> None:
    """Refuse a player count or deal the game cannot start with."""
    if not MIN_PLAYERS <= player_count <= MAX_PLAYERS:
        raise NotEnoughPlayers(
            f"A game needs {MIN_PLAYERS}–{MAX_PLAYERS} players; the room has {player_count}."
        )
    mafia, special = counts["mafia"], counts["doctor"] + counts["detective"]
    if mafia < 1:
        raise InvalidRoles("The deal needs at least one mafia member.")
    if mafia >= player_count - mafia:
        raise InvalidRoles(f"{mafia} mafia among {player_count} players: mafia must be fewer than town.")
    if mafia + special > player_count:
        raise InvalidRoles(f"{mafia + special} special roles do not fit {player_count} players.")


def start(
    player_ids: Sequence[str], counts: Mapping[str, int] | None, *, reveal_on_death: bool, rng: random.Random
) -> tuple[Game, list[Fact]]:
    """Deal the roles at random and open the first night."""
    deal = dict(counts) if counts is not None else default_roles(len(player_ids))
    check_roles(len(player_ids), deal)
    roles = (
        [Role.mafia] * deal["mafia"]
        + [Role.doctor] * deal["doctor"]
        + [Role.detective] * deal["detective"]
        + [Role.citizen] * (len(player_ids) - deal["mafia"] - deal["doctor"] - deal["detective"])
    )
    rng.shuffle(roles)
    seats = tuple(Seat(pid, role) for pid, role in zip(player_ids, roles, strict=True))
    game = Game(seats=seats, reveal_on_death=reveal_on_death)
    mafia = tuple(s.player_id for s in seats if s.role is Role.mafia)
    facts: list[Fact] = [
        RoleDealt(
            s.player_id, s.role, tuple(m for m in mafia if m != s.player_id) if s.role is Role.mafia else ()
        )
        for s in seats
    ]
    facts.append(PhaseBegan(1, Phase.night))
    return game, facts


def action_of(game: Game, seat: Seat) -> Action | None:
    """Return what a player may do in the open phase, if anything."""
    if not seat.alive or game.finished:
        return None
    if game.phase is Phase.vote:
        return Action.eliminate
    if game.phase is Phase.night:
        return {Role.mafia: Action.kill, Role.doctor: Action.protect, Role.detective: Action.investigate}.get(
            seat.role
        )
    return None


def _check_target(game: Game, voter: Seat, action: Action, target_id: str | None) -> None:
    if target_id is None:
        return
    target = game.seat(target_id)
    if target is None:
        raise InvalidTarget("The target is not a player of this game.")
    if not target.alive:
        raise InvalidTarget("The target is dead.")
    if action is Action.kill and target.role is Role.mafia:
        raise InvalidTarget("The mafia cannot kill one of their own.")
    if action in (Action.investigate, Action.eliminate) and target.player_id == voter.player_id:
        raise InvalidTarget(f"A player cannot {action.value} themselves.")


def vote(
    game: Game,
    voter_id: str,
    target_id: str | None,
    *,
    expected: tuple[int, Phase] | None = None,
) -> tuple[Game, list[Fact]]:
    """Cast or change a vote in the open phase; `expected` (round, phase) guards a late vote."""
    if game.finished or game.phase is None:
        raise GameNotInProgress("The game is not running.")
    if expected is not None and expected != (game.round, game.phase):
        raise PhaseClosed(
            f"Round {expected[0]} {expected[1].value} is over; it is round {game.round} {game.phase.value}."
        )
    voter = game.seat(voter_id)
    if voter is None:
        raise NotAPlayer("Only players dealt into the game may vote.")
    if not voter.alive:
        raise PlayerDead("Dead players watch; they do not vote.")
    action = action_of(game, voter)
    if action is None:
        raise CannotAct(f"A {voter.role.value} has nothing to vote on in the {game.phase.value} phase.")
    _check_target(game, voter, action, target_id)
    ballots = dict(game.ballots)
    ballots[voter_id] = Ballot(voter_id, action, target_id)
    fact = VoteCast(game.round, game.phase, action, voter_id, target_id)
    return replace(game, ballots=ballots), [fact]


def everyone_acted(game: Game) -> bool:
    """Return whether every player who may act in the open (voting) phase has voted."""
    if game.finished or game.phase not in (Phase.night, Phase.vote):
        return False
    acting = [s for s in game.alive() if action_of(game, s) is not None]
    return all(s.player_id in game.ballots for s in acting)


def tally(ballots: Sequence[Ballot]) -> tuple[tuple[str | None, int], ...]:
    """Return the votes per target (None: abstentions), most first, then by target id."""
    counts = Counter(b.target_id for b in ballots)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0] or "")))


def plurality(ballots: Sequence[Ballot]) -> str | None:
    """Return the target with strictly the most votes; a tie or no votes picks nobody."""
    counts = Counter(b.target_id for b in ballots if b.target_id is not None)
    ranked = counts.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def winner_of(seats: Sequence[Seat]) -> Team | None:
    """Town wins when no mafia is alive; mafia wins when alive mafia ≥ alive town."""
    mafia = sum(1 for s in seats if s.alive and s.team is Team.mafia)
    town = sum(1 for s in seats if s.alive and s.team is Team.town)
    if mafia == 0:
        return Team.town
    if mafia >= town:
        return Team.mafia
    return None


def _kill(game: Game, player_id: str, cause: str) -> tuple[Game, Eliminated]:
    seats = tuple(replace(s, alive=False) if s.player_id == player_id else s for s in game.seats)
    seat = game.seat(player_id)
    assert seat is not None
    return replace(game, seats=seats), Eliminated(
        game.round, player_id, cause, seat.role, game.reveal_on_death
    )


def advance(game: Game, *, expected: tuple[int, Phase] | None = None) -> tuple[Game, list[Fact]]:
    """Close the open phase (deadline, everyone acted, or the host) and open the next one."""
    if game.finished or game.phase is None:
        raise GameNotInProgress("The game is not running.")
    if expected is not None and expected != (game.round, game.phase):
        raise PhaseClosed(
            f"Round {expected[0]} {expected[1].value} is already over; "
            f"it is round {game.round} {game.phase.value}."
        )
    facts: list[Fact] = []
    ballots = list(game.ballots.values())
    if game.phase is Phase.day:
        return replace(game, phase=Phase.vote, ballots={}), [PhaseBegan(game.round, Phase.vote)]
    if game.phase is Phase.night:
        kills = [b for b in ballots if b.action is Action.kill]
        target = plurality(kills)
        protected = {b.target_id for b in ballots if b.action is Action.protect and b.target_id is not None}
        killed = target if target is not None and target not in protected else None
        facts.append(VoteClosed(game.round, Phase.night, Action.kill, tally(kills), killed))
        for b in ballots:
            if b.action is Action.protect and b.target_id is not None:
                facts.append(Protected(game.round, b.voter_id, b.target_id))
            if b.action is Action.investigate and b.target_id is not None:
                seat = game.seat(b.target_id)
                assert seat is not None
                facts.append(Investigated(game.round, b.voter_id, b.target_id, seat.team))
        if killed is not None:
            game, eliminated = _kill(game, killed, "killed")
            facts.append(eliminated)
        next_round, next_phase = game.round, Phase.day
    else:
        votes = [b for b in ballots if b.action is Action.eliminate]
        out = plurality(votes)
        facts.append(VoteClosed(game.round, Phase.vote, Action.eliminate, tally(votes), out))
        if out is not None:
            game, eliminated = _kill(game, out, "voted")
            facts.append(eliminated)
        killed = None
        next_round, next_phase = game.round + 1, Phase.night
    winner = winner_of(game.seats)
    if winner is not None:
        facts.append(Finished(winner))
        return replace(game, phase=None, ballots={}, winner=winner), facts
    facts.append(PhaseBegan(next_round, next_phase, killed))
    return replace(game, round=next_round, phase=next_phase, ballots={}), facts


def may_see_role(viewer_id: str, viewer_team: str | None, seat: Seat, game: Game) -> bool:
    """Return whether a viewer may know a player's role and team now."""
    if seat.player_id == viewer_id or game.finished or (not seat.alive and game.reveal_on_death):
        return True
    # Mafia members know each other; town members know nobody's role but their own.
    return viewer_team == Team.mafia.value and seat.team is Team.mafia


def allowed_targets(game: Game, voter: Seat, action: Action) -> list[str]:
    """Return every player a vote of `action` may name, by seat."""
    allowed = []
    for target in game.alive():
        try:
            _check_target(game, voter, action, target.player_id)
        except InvalidTarget:
            continue
        allowed.append(target.player_id)
    return allowed


def dump(game: Game) -> dict[str, Any]:
    """Return the game as JSON."""
    return {
        "seats": [[s.player_id, s.role.value, s.alive] for s in game.seats],
        "round": game.round,
        "phase": game.phase.value if game.phase else None,
        "ballots": [[b.voter_id, b.action.value, b.target_id] for b in game.ballots.values()],
        "winner": game.winner.value if game.winner else None,
        "reveal_on_death": game.reveal_on_death,
    }


def load(data: Mapping[str, Any]) -> Game:
    """Return the game `dump` stored."""
    return Game(
        seats=tuple(Seat(pid, Role(role), alive) for pid, role, alive in data["seats"]),
        round=data["round"],
        phase=Phase(data["phase"]) if data["phase"] else None,
        ballots={v: Ballot(v, Action(a), t) for v, a, t in data["ballots"]},
        winner=Team(data["winner"]) if data["winner"] else None,
        reveal_on_death=data["reveal_on_death"],
    )
