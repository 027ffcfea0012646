"""The seam between the platform and a game: what every ruleset provides, as pure functions,
and the plain values that cross it. The platform (game service, hub, views) knows a game only
through a `Ruleset` from the registry; a ruleset knows nothing of rows, requests or sockets."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from backend.contract import api


class Visibility(StrEnum):
    """Who may see a fact (and the event that tells it)."""

    room = "room"  # everyone in the room
    team = "team"  # one team (key: the team)
    player = "player"  # one player (key: the player id)
    sealed = "sealed"  # nobody until its phase closes, then everyone (key: the phase, see `phase_key`)
    nobody = "nobody"  # no player ever: kept in the log for replay and operators


@dataclass(frozen=True, slots=True)
class Audience:
    """A visibility and its key (a team, a player id, a sealed phase)."""

    visibility: Visibility
    key: str | None = None


EVERYONE = Audience(Visibility.room)
NOBODY = Audience(Visibility.nobody)


def team(name: str) -> Audience:
    return Audience(Visibility.team, name)


def player(player_id: str) -> Audience:
    return Audience(Visibility.player, player_id)


def phase_key(round_: int, phase: str, attempt: int = 1) -> str:
    """Return the key of one opening of a phase (a phase may open several times in a round)."""
    return f"{round_}:{phase}:{attempt}"


def sealed(round_: int, phase: str, attempt: int = 1) -> Audience:
    return Audience(Visibility.sealed, phase_key(round_, phase, attempt))


@dataclass(frozen=True, slots=True)
class Position:
    """Where a game stands: the open phase (None once over) and the winner (None while it runs)."""

    round: int
    phase: str | None
    attempt: int = 1
    winner: str | None = None

    @property
    def key(self) -> str | None:
        return phase_key(self.round, self.phase, self.attempt) if self.phase is not None else None


@dataclass(frozen=True, slots=True)
class SeatState:
    """A dealt player as the rules see them: role, team, alive."""

    player_id: str
    role: str
    team: str
    alive: bool = True


@dataclass(frozen=True)
class View:
    """What one viewer may see of a game's state beyond the public rows."""

    roles: frozenset[str]  # the players whose role and team the viewer may see
    teammates: tuple[str, ...] = ()  # the players the viewer knows to share their team
    board: BaseModel | None = None  # the ruleset's public state (api.RoomState.board)


@dataclass(frozen=True, slots=True)
class VoteRecord:
    """A vote or choice to keep as a row (every change is a new row)."""

    round: int
    phase: str
    attempt: int
    action: str
    voter_id: str
    target_id: str | None = None
    choice: str | None = None


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A closed phase's result to keep as a row."""

    round: int
    phase: str
    attempt: int
    tally: list[dict[str, Any]] | None = None
    eliminated_player_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


Record = VoteRecord | ResultRecord


@dataclass(frozen=True, slots=True)
class Emit:
    """An event a fact produces: its type and its data (a generated AsyncAPI model)."""

    type: str
    data: BaseModel


@dataclass(frozen=True, slots=True)
class Chatter:
    """What the chat rules need of a speaker while their game runs."""

    phase: str | None
    team: str | None
    alive: bool


Deadline = Callable[[str], datetime]  # the deadline of a phase opened now (database clock)


State = TypeVar("State")
Fact = TypeVar("Fact")


class Ruleset(Protocol[State, Fact]):
    """One game's rules. Pure: no I/O, no clock (deadlines come in), randomness passed in."""

    name: str
    # The phases of a round in order (history is sorted by it).
    phases: tuple[str, ...]
    # The contract models of the settings: as stored (and shown), and as sent (create/update).
    settings_model: type[BaseModel]
    settings_input: type[BaseModel]
    # Every setting's default (a new room's settings, before the host's own).
    defaults: Mapping[str, Any]

    def check_settings(self, settings: Mapping[str, Any], player_count: int) -> None:
        """Refuse settings that cannot hold the room (RuleError)."""
        ...

    def phase_seconds(self, settings: Mapping[str, Any], phase: str) -> int:
        """Return how long a phase stays open."""
        ...

    def setup(
        self, player_ids: Sequence[str], settings: Mapping[str, Any], rng: random.Random
    ) -> tuple[State, list[Fact], BaseModel | None]:
        """Deal the game (players by seat); also the role counts `game.started` announces."""
        ...

    def action(self, body: BaseModel) -> Any:
        """Return the ruleset's own action for a request body, or raise CannotAct (not its action)."""
        ...

    def apply(self, state: State, actor_id: str, action: Any) -> tuple[State, list[Fact]]:
        """Take a player's action (RuleError when refused); close the phase when it was the last awaited."""
        ...

    def on_deadline(self, state: State) -> tuple[State, list[Fact]]:
        """Close the open phase (its deadline, or the host) and open the next."""
        ...

    def options(self, state: State, player_id: str) -> list[api.Option]:
        """Return the actions a player may take now: each is accepted, anything else refused."""
        ...

    def audience(self, fact: Fact) -> Audience:
        """Return who may see a fact."""
        ...

    def to_events(self, fact: Fact, deadline: Deadline) -> list[Emit]:
        """Return the events that tell a fact."""
        ...

    def record(self, fact: Fact) -> Record | None:
        """Return the row a fact keeps (a vote, a phase's result), if any."""
        ...

    def view(self, state: State, viewer_id: str) -> View:
        """Return what a viewer may see of the state."""
        ...

    def position(self, state: State) -> Position:
        """Return the open phase and the winner."""
        ...

    def seats(self, state: State) -> Sequence[SeatState]:
        """Return every dealt player's role, team and life, by seat."""
        ...

    def chat_channel(self, chatter: Chatter) -> tuple[api.ChatChannel, Audience]:
        """Return where a player's chat goes while the game runs (RuleError when they may not talk)."""
        ...

    def dump(self, state: State) -> dict[str, Any]:
        """Return the state as JSON (stored with the room)."""
        ...

    def load(self, data: Mapping[str, Any]) -> State:
        """Return the state stored by `dump`."""
        ...
