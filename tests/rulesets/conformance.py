"""The promises every ruleset makes behind `backend.games.protocol.Ruleset`, as checks.

A game is played through the protocol only (`play`): dealt with a seeded random, then driven
by a `Draw` (hypothesis, or a seeded random) through listed options, actions nobody was
offered, and deadlines, then finished by a policy that ends any game that can end (everyone
takes an option each phase, at random for a while, then their first). On every opening of a
phase, every player's options and some actions not offered are tried on the side (probes).
Every call is recorded in a `Run`; each `check_*` function reads a run and raises
AssertionError, its message prefixed with what it guards (`option:`, `dump:`, `replay:`,
`end:`, `event:`, `role:`, `sealed:`, `nobody:`, `hidden:`, `spectator:`), when a promise
is broken.

The viewers the checks judge are the players and a spectator (`Run.spectator`: an id no
player has, with no seat and no team, as someone watching the room is), each live (the
events their stream carries) and in history (what reading the room shows at each step);
`check_spectator` holds the spectator to what every player may see.

Nothing here names a game: a ruleset is checked by its registry line. What a ruleset keeps
hidden is read from its own audiences; `PROMISES` adds the few secrets PRODUCT.md promises
per game, so that a ruleset that forgets to hide one is caught too.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import re
import typing
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from backend.contract import api, events
from backend.domain.errors import RuleError
from backend.games.projection import Now, Viewer, may_see
from backend.games.protocol import Position, Ruleset, SeatState, View, Visibility, VoteRecord
from backend.realtime.hub import ROOM_EVENT

T = TypeVar("T")

# The request bodies of every action of every ruleset, by `type` (the contract's union).
ACTION: TypeAdapter[Any] = TypeAdapter(api.ActionRequest)
MODELS: dict[str, type[BaseModel]] = {
    typing.get_args(model.model_fields["type"].annotation)[0]: model
    for model in typing.get_args(typing.get_args(api.ActionRequest.__value__)[0])
}
TEAMS = frozenset(t.value for t in api.Team)
PHASES = frozenset(p.value for p in api.Phase)
# A refusal's code is a stable identifier clients switch on, not a sentence.
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
ROOM_ID = uuid.UUID(int=1)
AT = datetime(2030, 1, 1, tzinfo=UTC)
# The finishing policy's bound: phases closed (by actions or deadlines) before a game must end.
MAX_PHASES = 300
# Phases the finishing policy plays at random (a policy that may never end a game, as mafia's
# abstentions and ties may not) before it settles for everyone's first option.
RANDOM_PHASES = 20
# Targets of one option tried on every opening of a phase (a mafia vote offers one per player).
PROBED = 6
# The state's board, as the contract has it (whatever rulesets it grows to hold).
BOARD: TypeAdapter[Any] = TypeAdapter(typing.cast(Any, api.RoomState.model_fields["board"].annotation))

# Secrets PRODUCT.md promises per ruleset, whatever audience the ruleset gives them: the
# events of these types are sealed until the phase they were cast in closes, or shown to
# nobody ever. (Each ruleset's own `sealed` and `nobody` facts are checked the same way.)
PROMISES: dict[str, dict[str, Visibility]] = {
    # "Votes are sealed: nobody (not even teammates) sees another's vote until the phase
    # closes"; "which member chose what is never shown to anyone, during or after the game".
    "missions": {"approval.cast": Visibility.sealed, "mission.chosen": Visibility.nobody},
}


def deadline(phase: str) -> datetime:
    """Return every phase's deadline: a fixed instant, so that events are deterministic."""
    return AT


class Draw:
    """Where a game's random choices come from; each method draws from `integer`."""

    def integer(self, low: int, high: int, label: str) -> int:
        raise NotImplementedError

    def choice(self, items: Sequence[T], label: str) -> T:
        return items[self.integer(0, len(items) - 1, label)]

    def sample(self, items: Sequence[T], k: int, label: str) -> list[T]:
        pool = list(items)
        return [pool.pop(self.integer(0, len(pool) - 1, label)) for _ in range(k)]

    def boolean(self, label: str) -> bool:
        return self.integer(0, 1, label) == 1


class RandomDraw(Draw):
    """Choices from a seeded random: a fixed game for a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, low: int, high: int, label: str) -> int:
        return self.rng.randint(low, high)


@dataclass(frozen=True)
class Emitted:
    """An event a step produced: type, JSON data, audience, and the phase open when it happened."""

    index: int
    step: int
    type: str
    data: dict[str, Any]
    visibility: str
    key: str | None
    opened: str | None
    # The platform's own event (game.finished), modelled here from the ruleset's seats and rows.
    synthetic: bool = False


@dataclass(frozen=True)
class Attempt:
    """One call of `action`+`apply` (or `on_deadline`): applied, or only probed."""

    kind: str  # "act", "probe" (its result dropped: the game goes on as before) or "deadline"
    actor: str | None
    body: dict[str, Any] | None
    listed: bool
    accepted: bool
    error: BaseException | None
    # The state handed in was changed by the call (its dump differs afterwards).
    mutated: bool


@dataclass
class Step:
    """A call that moved the game (the deal, an action, a deadline) and what it produced."""

    index: int
    kind: str  # "setup", "act" or "deadline"
    actor: str | None
    body: dict[str, Any] | None
    before: Position | None
    after: Position
    facts: list[Any]
    events: list[Emitted]
    state: Any
    last_event: int  # the index of the newest event once this step is done (-1: none yet)


@dataclass
class Run:
    """A game played through the protocol: every attempt, every step, every event."""

    rules: Ruleset[Any, Any]
    seed: int
    players: list[str]
    # An id no player has: the spectator, who also tries actions (never offered any).
    stranger: str
    settings: dict[str, Any]
    probing: bool = True
    attempts: list[Attempt] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    events: list[Emitted] = field(default_factory=list)
    votes: list[tuple[VoteRecord, str]] = field(default_factory=list)
    state: Any = None
    _views: dict[tuple[int, str], View] = field(default_factory=dict)
    _seats: dict[int, dict[str, SeatState]] = field(default_factory=dict)
    _options: dict[tuple[int, str], list[api.Option]] = field(default_factory=dict)
    _streams: dict[str, tuple[int, frozenset[int]]] = field(default_factory=dict)
    _dumped: tuple[Any, dict[str, Any]] | None = None

    @classmethod
    def deal(
        cls,
        rules: Ruleset[Any, Any],
        seed: int,
        count: int,
        settings: dict[str, Any],
        *,
        probing: bool = True,
    ) -> Run:
        """Deal a game of `count` players (ids and deal both follow from the seed)."""
        ids = random.Random(seed ^ 0x5EA7)
        players = [str(uuid.UUID(int=ids.getrandbits(128), version=4)) for _ in range(count + 1)]
        run = cls(rules, seed, players[:-1], players[-1], settings, probing)
        rules.check_settings(settings, count)
        state, facts, _ = rules.setup(run.players, settings, random.Random(seed))
        run._commit("setup", None, None, None, state, facts)
        return run

    @property
    def position(self) -> Position:
        return self.rules.position(self.state)

    @property
    def finished(self) -> bool:
        return self.position.winner is not None

    @property
    def spectator(self) -> str:
        """Return who watches the room: no seat, no team (`Viewer(id, None)`, as the platform
        reads a spectator), streamed live and reading history like anyone else."""
        return self.stranger

    @property
    def viewers(self) -> list[str]:
        """Return whom every check judges: the players, then the spectator."""
        return [*self.players, self.spectator]

    def options(self, player_id: str) -> list[api.Option]:
        return self.rules.options(self.state, player_id)

    def view(self, step: Step, viewer_id: str) -> View:
        """Return `view` of a step's state for a viewer (computed once)."""
        key = (step.index, viewer_id)
        if key not in self._views:
            self._views[key] = self.rules.view(step.state, viewer_id)
        return self._views[key]

    def seats(self, step: Step) -> dict[str, SeatState]:
        """Return a step's seats by player (computed once)."""
        if step.index not in self._seats:
            self._seats[step.index] = {s.player_id: s for s in self.rules.seats(step.state)}
        return self._seats[step.index]

    def offered(self, step: Step, player_id: str) -> list[api.Option]:
        """Return a step's options for a player (computed once)."""
        key = (step.index, player_id)
        if key not in self._options:
            self._options[key] = self.rules.options(step.state, player_id)
        return self._options[key]

    def act(
        self,
        actor: str,
        body: dict[str, Any],
        *,
        probe: bool = False,
        options: Sequence[api.Option] | None = None,
    ) -> bool:
        """Send one request body as `actor` (offered `options` now, when known); return
        whether it was accepted (and, unless a probe, taken)."""
        try:
            request = ACTION.validate_python(body)
        except ValidationError:
            return False  # the contract refuses it before any ruleset sees it
        state = self.state
        listed = is_listed(self.rules.options(state, actor) if options is None else options, body)
        before = self._dump_now()
        try:
            after, facts = self.rules.apply(state, actor, self.rules.action(request))
        except Exception as error:  # anything but a RuleError is reported by check_options
            mutated = self.rules.dump(state) != before
            self.attempts.append(
                Attempt("probe" if probe else "act", actor, body, listed, False, error, mutated)
            )
            return False
        mutated = self.rules.dump(state) != before
        self.attempts.append(Attempt("probe" if probe else "act", actor, body, listed, True, None, mutated))
        if not probe:
            self._commit("act", actor, body, self.rules.position(state), after, facts)
        return True

    def _dump_now(self) -> dict[str, Any]:
        """Return the dump of the game as it stands (once per state: probes try many calls on one)."""
        if self._dumped is None or self._dumped[0] is not self.state:
            self._dumped = (self.state, self.rules.dump(self.state))
        return self._dumped[1]

    def deadline(self) -> bool:
        """Let the open phase's deadline pass; return whether the ruleset took it."""
        state = self.state
        before = self._dump_now()
        try:
            after, facts = self.rules.on_deadline(state)
        except Exception as error:
            mutated = self.rules.dump(state) != before
            self.attempts.append(Attempt("deadline", None, None, True, False, error, mutated))
            return False
        mutated = self.rules.dump(state) != before
        self.attempts.append(Attempt("deadline", None, None, True, True, None, mutated))
        self._commit("deadline", None, None, self.rules.position(state), after, facts)
        return True

    def _commit(
        self,
        kind: str,
        actor: str | None,
        body: dict[str, Any] | None,
        before: Position | None,
        after: Any,
        facts: list[Any],
    ) -> None:
        index = len(self.steps)
        opened = before.key if before is not None else None
        emitted: list[Emitted] = []
        for fact in facts:
            audience = self.rules.audience(fact)
            visibility, key = str(audience.visibility), audience.key
            for emit in self.rules.to_events(fact, deadline):
                data = emit.data.model_dump(mode="json")
                emitted.append(
                    Emitted(len(self.events) + len(emitted), index, emit.type, data, visibility, key, opened)
                )
            record = self.rules.record(fact)
            if isinstance(record, VoteRecord):
                self.votes.append((record, visibility))
        self.state = after
        position = self.rules.position(after)
        if position.winner is not None and (before is None or before.winner is None):
            emitted.append(self._finished(len(self.events) + len(emitted), index, opened, position.winner))
        self.events += emitted
        self.steps.append(
            Step(index, kind, actor, body, before, position, facts, emitted, after, len(self.events) - 1)
        )
        if self.probing and position.winner is None and (before is None or before.key != position.key):
            self.probe()

    def _finished(self, index: int, step: int, opened: str | None, winner: str) -> Emitted:
        """Model the platform's game.finished: every role, and every vote kept but those for nobody."""
        seats = self.rules.seats(self.state)
        data = {
            "winner": winner,
            "players": [{"id": s.player_id, "role": s.role, "team": s.team} for s in seats],
            "votes": [
                {
                    "round": v.round,
                    "phase": v.phase,
                    "action": v.action,
                    "voter_id": v.voter_id,
                    "target_player_id": v.target_id,
                    "choice": v.choice,
                }
                for v, visibility in self.votes
                if visibility != Visibility.nobody
            ],
        }
        return Emitted(
            index, step, "game.finished", data, Visibility.room.value, None, opened, synthetic=True
        )

    def probe(self) -> None:
        """Try every option each player is offered now, and actions nobody offered them, on copies."""
        for actor in self.viewers:
            options = self.options(actor)
            for option in options:
                for body in listed_bodies(option):
                    self.act(actor, body, probe=True, options=options)
            for body in unlisted_bodies(options, self.players, self.stranger):
                self.act(actor, body, probe=True, options=options)

    def finish(self, draw: Draw | None = None) -> None:
        """Play on until the end: in each phase everyone takes an option (a random one for the
        first RANDOM_PHASES phases when there is a draw, then their first), then the deadline passes."""
        for closed in range(MAX_PHASES):
            if self.finished:
                return
            key = self.position.key
            for actor in self.players:
                if self.finished or self.position.key != key:
                    break
                options = self.options(actor)
                if options and draw is not None and closed < RANDOM_PHASES:
                    self.act(actor, random_listed(draw.choice(options, "option"), draw))
                elif options:
                    self.act(actor, next(listed_bodies(options[0])))
            if not self.finished and self.position.key == key and not self.deadline():
                return

    def plan(self) -> list[tuple[str, str | None, dict[str, Any] | None]]:
        """Return the steps after the deal, as calls to make again."""
        return [(s.kind, s.actor, s.body) for s in self.steps[1:]]

    def replay(
        self, plan: Sequence[tuple[str, str | None, dict[str, Any] | None]], stop: int | None = None
    ) -> tuple[Run, list[bool]]:
        """Play the same deal again through `plan` (up to step `stop`); return it and what each call did."""
        again = Run.deal(self.rules, self.seed, len(self.players), self.settings, probing=False)
        taken = []
        for kind, actor, body in plan[:stop]:
            if kind == "deadline":
                taken.append(again.deadline())
            else:
                assert actor is not None
                assert body is not None
                taken.append(again.act(actor, body))
        return again, taken


def player_bounds(rules: Ruleset[Any, Any]) -> tuple[int, int]:
    """Return the player counts a room of the ruleset may hold (its `max_players` bounds)."""
    bounds = rules.settings_input.model_json_schema()["properties"]["max_players"]
    return int(bounds["minimum"]), int(bounds["maximum"])


def settings_for(rules: Ruleset[Any, Any], draw: Draw, count: int) -> dict[str, Any]:
    """Return a room's settings: the defaults, with every on/off rule setting drawn."""
    settings = {**rules.defaults, "max_players": count}
    for name, info in rules.settings_input.model_fields.items():
        if info.annotation is bool and name != "private":
            settings[name] = draw.boolean(name)
    return settings


def is_listed(options: Sequence[api.Option], body: Mapping[str, Any]) -> bool:
    """Return whether an option allows this request body (the contract's reading of `Option`)."""
    for option in options:
        if option.type.value != body.get("type"):
            continue
        targets = {str(t) for t in option.targets}
        if option.choices:
            if body.get("choice") in option.choices:
                return True
        elif option.pick == 1:
            target = body.get("target_player_id", "")
            if (target is None and option.abstain) or target in targets:
                return True
        elif option.pick > 1:
            picked = body.get("player_ids")
            if (
                isinstance(picked, list)
                and len(picked) == option.pick
                and len(set(picked)) == len(picked)
                and set(picked) <= targets
            ):
                return True
    return False


def listed_bodies(option: api.Option) -> Iterator[dict[str, Any]]:
    """Yield request bodies an option allows: every choice or target, a few teams."""
    kind = option.type.value
    targets = [str(t) for t in option.targets]
    if option.choices:
        for choice in option.choices:
            yield {"type": kind, "choice": choice}
    elif option.pick == 1:
        # At most PROBED targets, spread over the list (first and last always among them).
        spread = sorted({round(n * (len(targets) - 1) / (PROBED - 1)) for n in range(PROBED)})
        for n in spread if len(targets) > PROBED else range(len(targets)):
            yield {"type": kind, "target_player_id": targets[n]}
        if option.abstain:
            yield {"type": kind, "target_player_id": None}
    elif option.pick > 1:
        teams = list(itertools.islice(itertools.combinations(targets, option.pick), 3))
        teams.append(tuple(reversed(targets[-option.pick :])))
        for team in teams:
            yield {"type": kind, "player_ids": list(team)}


def random_listed(option: api.Option, draw: Draw) -> dict[str, Any]:
    """Return a random request body an option allows."""
    kind = option.type.value
    targets = [str(t) for t in option.targets]
    if option.choices:
        return {"type": kind, "choice": draw.choice(option.choices, "choice")}
    if option.pick == 1:
        return {
            "type": kind,
            "target_player_id": draw.choice([*targets, *([None] * option.abstain)], "target"),
        }
    return {"type": kind, "player_ids": draw.sample(targets, option.pick, "team")}


@functools.cache
def _choices(model: type[BaseModel]) -> list[str]:
    annotation = model.model_fields["choice"].annotation
    assert isinstance(annotation, type)
    assert issubclass(annotation, Enum)
    return [str(c.value) for c in annotation]


def unlisted_bodies(
    options: Sequence[api.Option], players: Sequence[str], stranger: str
) -> Iterator[dict[str, Any]]:
    """Yield bodies the options do not allow: another type (another ruleset's too), a target
    or choice not offered, a team of the wrong size, with a player twice, or with a stranger."""
    offered = {o.type.value for o in options}
    for kind, model in MODELS.items():
        if kind not in offered:
            yield any_body(model, players)
    for option in options:
        kind, model = option.type.value, MODELS[option.type.value]
        targets = [str(t) for t in option.targets]
        others = [p for p in [*players, stranger] if p not in targets]
        if "choice" in model.model_fields:
            for choice in _choices(model):
                if choice not in option.choices:
                    yield {"type": kind, "choice": choice}
        if "target_player_id" in model.model_fields:
            if others:
                yield {"type": kind, "target_player_id": others[0]}
            if not option.abstain:
                yield {"type": kind, "target_player_id": None}
        if "player_ids" in model.model_fields and option.pick > 1 and len(targets) >= option.pick:
            team = targets[: option.pick]
            yield {
                "type": kind,
                "player_ids": [*team, *[p for p in [*targets, stranger] if p not in team][:1]],
            }
            yield {"type": kind, "player_ids": team[:-1]}
            yield {"type": kind, "player_ids": [*team[:-1], team[0]]}
            yield {"type": kind, "player_ids": [*team[:-1], stranger]}


def any_body(model: type[BaseModel], players: Sequence[str]) -> dict[str, Any]:
    """Return a valid body of a request model (its first choice, the first players)."""
    kind = typing.get_args(model.model_fields["type"].annotation)[0]
    body: dict[str, Any] = {"type": kind}
    if "choice" in model.model_fields:
        body["choice"] = _choices(model)[0]
    if "target_player_id" in model.model_fields:
        body["target_player_id"] = players[0]
    if "player_ids" in model.model_fields:
        body["player_ids"] = list(players[:2])
    return body


def random_body(draw: Draw, players: Sequence[str], stranger: str) -> dict[str, Any]:
    """Return a random body of any action of any ruleset (mostly not offered to whoever sends it)."""
    kind = draw.choice(sorted(MODELS), "type")
    model = MODELS[kind]
    everyone = [*players, stranger]
    body: dict[str, Any] = {"type": kind}
    if "choice" in model.model_fields:
        body["choice"] = draw.choice(_choices(model), "choice")
    if "target_player_id" in model.model_fields:
        body["target_player_id"] = draw.choice([*everyone, None], "target")
    if "player_ids" in model.model_fields:
        body["player_ids"] = [draw.choice(everyone, "team") for _ in range(draw.integer(2, 5, "size"))]
    return body


def play(rules: Ruleset[Any, Any], draw: Draw, *, max_prefix: int = 40, probing: bool = True) -> Run:
    """Play a random game to its end through the protocol only, and return the record."""
    low, high = player_bounds(rules)
    count = draw.integer(low, high, "players")
    seed = draw.integer(0, 2**32 - 1, "seed")
    run = Run.deal(rules, seed, count, settings_for(rules, draw, count), probing=probing)
    for _ in range(draw.integer(0, max_prefix, "steps")):
        if run.finished:
            break
        kind = draw.integer(0, 19, "kind")
        if kind <= 13:
            offered = [p for p in run.players if run.options(p)]
            if offered:
                actor = draw.choice(offered, "actor")
                run.act(actor, random_listed(draw.choice(run.options(actor), "option"), draw))
        elif kind <= 17:
            actor = draw.choice(run.viewers, "anyone")
            run.act(actor, random_body(draw, run.players, run.stranger))
        else:
            run.deadline()
    run.finish(draw)
    return run


# What a viewer may see of a run.


def streamed(run: Run, viewer_id: str) -> frozenset[int]:
    """Return the events a viewer's stream carries (as the hub decides: a role.assigned deals a
    team); read once per viewer for the events so far (every check asks for every viewer's)."""
    known = run._streams.get(viewer_id)
    if known is not None and known[0] == len(run.events):
        return known[1]
    viewer, seen = Viewer(viewer_id), set()
    for event in run.events:
        if may_see(viewer, event.visibility, event.key):
            seen.add(event.index)
            dealt = event.data.get("team") if event.type == "role.assigned" else None
            viewer = viewer.after(event.type, dealt if isinstance(dealt, str) else None)
    run._streams[viewer_id] = (len(run.events), frozenset(seen))
    return run._streams[viewer_id][1]


def reader(run: Run, step: Step, viewer_id: str) -> tuple[Viewer, Now]:
    """Return who reads history (a player as their row says: their team once dealt) and when."""
    seat = run.seats(step).get(viewer_id)
    status = "finished" if step.after.winner is not None else "in_progress"
    return Viewer(viewer_id, seat.team if seat is not None else None), Now(status, step.after.key)


def dicts(
    data: Any, context: Mapping[str, Any] | None = None
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Yield every object in JSON data, with the scalars of it and its enclosing objects."""
    context = context or {}
    if isinstance(data, dict):
        here = {**context, **{k: v for k, v in data.items() if not isinstance(v, dict | list)}}
        yield data, here
        for value in data.values():
            yield from dicts(value, here)
    elif isinstance(data, list):
        for item in data:
            yield from dicts(item, context)


def strings(data: Any) -> set[str]:
    """Return the strings of an object's own values (lists of strings included)."""
    found: set[str] = set()
    for value in data.values() if isinstance(data, dict) else data:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, list):
            found |= {v for v in value if isinstance(v, str)}
    return found


ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Said:
    """What JSON data says, read once. Per object: the ids in it and in the objects around it
    (an id may be named anything: `voter_id`, `player_id`, a list), and the scalars in scope
    there. As a secret: all its ids, its words (`choice: fail`) and its numbers."""

    objects: tuple[tuple[frozenset[str], dict[str, Any]], ...]
    ids: frozenset[str]
    words: tuple[tuple[str, str], ...]
    numbers: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, data: Any) -> Said:
        objects = tuple(
            (
                frozenset(v for v in strings(obj) | set(here.values()) if isinstance(v, str) and ID.match(v)),
                here,
            )
            for obj, here in dicts(data)
        )
        ids = frozenset().union(*(i for i, _ in objects))
        scalars = {k: v for _, here in objects for k, v in here.items()}
        words = tuple((k, v) for k, v in scalars.items() if isinstance(v, str) and not ID.match(v))
        numbers = tuple((k, v) for k, v in scalars.items() if isinstance(v, bool | int))
        return cls(objects, ids, words, numbers)


def twin(secret: Said, data: Said) -> bool:
    """Return whether data carries what a secret says: one object of it (with what encloses it)
    holds every id and word of the secret, and no number that contradicts it (another round
    or attempt is another fact)."""
    if not (secret.ids or secret.words) or not secret.ids <= data.ids:
        return False
    return any(
        secret.ids <= ids
        and all(here.get(k) == word for k, word in secret.words)
        and all(k not in here or (type(here[k]) is type(v) and here[k] == v) for k, v in secret.numbers)
        for ids, here in data.objects
    )


def claims(data: Any, players: set[str]) -> set[tuple[str, str, str]]:
    """Return what JSON data tells of players' roles and teams: (player, "role"|"team", value)
    for each player named in an object that has a `role` or `team` word."""
    told = set()
    for obj, _ in dicts(data):
        named = strings(obj) & players
        for kind in ("role", "team"):
            value = obj.get(kind)
            if isinstance(value, str):
                told |= {(pid, kind, value) for pid in named}
    return told


# The checks.


def check_options(run: Run) -> None:
    """1. Every listed option is accepted; every other action is refused with a RuleError
    (a stable code, a 4xx status) and leaves the state as it was; no call changes its input."""
    assert run.attempts, "option: nothing was tried"
    for a in run.attempts:
        what = f"{a.body} by {a.actor}" if a.kind != "deadline" else "the deadline"
        assert not a.mutated, f"option: {what} changed the state it was given (a ruleset is pure)"
        if a.kind == "deadline":
            continue
        if a.listed:
            assert a.accepted, f"option: {what} was offered but refused: {a.error!r}"
            continue
        assert not a.accepted, f"option: {what} was not offered but accepted"
        assert isinstance(a.error, RuleError), f"option: {what} was refused by {a.error!r}, not a RuleError"
        assert CODE.match(a.error.code), f"option: {what} refused with the code {a.error.code!r}"
        assert 400 <= a.error.status < 500, f"option: {what} refused with status {a.error.status}"


def check_dump(run: Run) -> None:
    """2. `load(dump(s)) == s` through JSON, at every step."""
    for step in run.steps:
        dumped = run.rules.dump(step.state)
        try:
            text = json.dumps(dumped)
        except (TypeError, ValueError) as error:
            raise AssertionError(f"dump: step {step.index}'s state is not JSON: {error}") from error
        back = json.loads(text)
        assert back == dumped, f"dump: step {step.index}'s dump changes through JSON"
        assert run.rules.load(back) == step.state, f"dump: load(dump(s)) != s at step {step.index}"
        assert run.rules.dump(run.rules.load(back)) == dumped, (
            f"dump: dump(load(d)) != d at step {step.index}"
        )


def check_deterministic(run: Run) -> None:
    """3. The same seed and the same calls make the same game: facts, events and states."""
    again, taken = run.replay(run.plan())
    assert all(taken), "replay: a call the first game took was refused the second time"
    assert len(again.steps) == len(run.steps), "replay: the second game took another number of steps"
    for first, second in zip(run.steps, again.steps, strict=True):
        assert first.facts == second.facts, f"replay: step {first.index} produced other facts"
        assert [(e.type, e.data, e.visibility, e.key) for e in first.events] == [
            (e.type, e.data, e.visibility, e.key) for e in second.events
        ], f"replay: step {first.index} produced other events"
        assert run.rules.dump(first.state) == run.rules.dump(second.state), f"replay: step {first.index}"


def check_ends(run: Run) -> None:
    """4. The game ends within the bound, with a winner of the contract's Team enum; until then
    a contract phase is open, and at the end nobody is offered anything."""
    assert run.finished, f"end: still running after {MAX_PHASES} phases of everyone taking their first option"
    winner = run.position.winner
    assert winner in TEAMS, f"end: the winner {winner!r} is not a contract Team"
    assert run.position.phase is None, "end: a phase is open after the game ended"
    for step in run.steps[:-1]:
        assert step.after.winner is None, f"end: step {step.index} named a winner, yet the game went on"
        opened = step.after.phase
        assert opened in run.rules.phases, f"end: step {step.index} opened {opened!r}, not a phase of its own"
        assert opened in PHASES, f"end: step {step.index} opened {opened!r}, not a contract Phase"
        assert step.after.round >= 1, f"end: step {step.index} is in round {step.after.round}"
    refused = [a for a in run.attempts if a.kind == "deadline" and not a.accepted]
    assert not refused, f"end: a deadline of a running game was refused: {refused[0].error!r}"
    for pid in run.viewers:
        assert run.options(pid) == [], f"end: {pid} is offered {run.options(pid)} after the end"


def check_events(run: Run) -> None:
    """5. Every event validates against the AsyncAPI RoomEvent union (in its envelope), every
    audience is a well-formed one, and options and boards are contract models."""
    teams = {s.team for s in run.rules.seats(run.state)}
    for event in run.events:
        if event.synthetic:
            continue
        envelope = {
            "seq": event.index + 1,
            "room_id": ROOM_ID,
            "type": event.type,
            "at": AT,
            "data": event.data,
        }
        try:
            checked = ROOM_EVENT.validate_python(envelope)
        except ValidationError as error:
            raise AssertionError(
                f"event: {event.type} {event.data} is not the contract's: {error}"
            ) from error
        assert checked.data.model_dump(mode="json") == event.data, (
            f"event: {event.type} lost data in validation"
        )
        assert event.visibility in {v.value for v in Visibility}, (
            f"event: {event.type} to {event.visibility!r}"
        )
        if event.visibility in (Visibility.room, Visibility.nobody):
            assert event.key is None, f"event: {event.type} to {event.visibility} has a key {event.key!r}"
        elif event.visibility == Visibility.player:
            assert event.key in run.players, (
                f"event: {event.type} to a player who does not play: {event.key!r}"
            )
        elif event.visibility == Visibility.team:
            assert event.key in teams, f"event: {event.type} to a team nobody plays for: {event.key!r}"
    # What the platform sends on: each player's options (in `options.changed`, when they
    # change) and each viewer's board (in the state).
    sent: dict[str, Any] = {}
    for step in run.steps:
        opened = step.before is None or step.before.key != step.after.key
        # Everyone's when a phase opens, else the actor's (what one call changes, mostly).
        for pid in run.viewers if opened else [p for p in run.viewers if p == step.actor]:
            view = run.view(step, pid)
            board = view.board.model_dump(mode="json") if view.board is not None else None
            options = [o.model_dump(mode="json") for o in run.offered(step, pid)]
            if sent.get(pid) == (options, board):
                continue
            sent[pid] = (options, board)
            try:
                events.OptionsChangedData.model_validate({"player_id": pid, "options": options})
                BOARD.validate_python(board)
            except ValidationError as error:
                raise AssertionError(f"event: step {step.index}'s options or board: {error}") from error


def check_roles(run: Run) -> None:
    """6a. A viewer is never told a role (or, but by an answer to themself, a team) that their
    `view` does not show, and `view` shows no role that no event they may see told them."""
    players = set(run.players)
    told = [(e, c) for e in run.events if (c := claims(e.data, players))]
    for viewer in run.viewers:
        stream = streamed(run, viewer)
        for step in run.steps:
            truth = {pid: {"role": s.role, "team": s.team} for pid, s in run.seats(step).items()}
            history, now = reader(run, step, viewer)
            view = run.view(step, viewer)
            roles: set[str] = set()
            teams: set[str] = set()
            board = view.board.model_dump(mode="json") if view.board is not None else None
            heard = [
                (e.visibility, e.key, c)
                for e, c in told
                if e.index <= step.last_event
                and (e.index in stream or may_see(history, e.visibility, e.key, now))
            ]
            for visibility, key, said in [*heard, (Visibility.room.value, None, claims(board, players))]:
                for pid, kind, value in said:
                    if pid == viewer or truth[pid][kind] != value:
                        continue  # their own role, or not a reveal
                    if kind == "role":
                        roles.add(pid)
                    elif not (visibility == Visibility.player and key == viewer):
                        teams.add(pid)
            shown = set(view.roles) - {viewer}
            where = f"at step {step.index} ({step.after.key})"
            assert roles <= view.roles, f"role: {viewer} is told the roles of {roles - view.roles} {where}"
            assert teams <= view.roles, f"role: {viewer} is told the teams of {teams - view.roles} {where}"
            assert shown <= roles, (
                f"role: view shows {viewer} the roles of {shown - roles}, that no event told them, {where}"
            )
            mates = set(view.teammates)
            assert mates <= view.roles, (
                f"role: {viewer}'s teammates {mates - view.roles} are not shown {where}"
            )
            team = truth[viewer]["team"] if viewer in truth else None  # a spectator has none
            assert all(truth[m]["team"] == team for m in mates), (
                f"role: {viewer} is shown teammates of another team (or none) {where}"
            )


def _secrets(run: Run, kind: Visibility) -> list[Emitted]:
    promised = PROMISES.get(run.rules.name, {})
    return [e for e in run.events if e.visibility == kind or promised.get(e.type) == kind]


def _boards(run: Run, steps: Sequence[Step]) -> Iterator[tuple[str, Said]]:
    """Yield each viewer's board over some steps, read once per distinct board."""
    said: dict[str, Said] = {}
    for step in steps:
        for viewer in run.viewers:
            board = run.view(step, viewer).board
            if board is None:
                continue
            text = board.model_dump_json()
            if text not in said:
                said[text] = Said.of(board.model_dump(mode="json"))
                yield viewer, said[text]


def check_sealed(run: Run) -> None:
    """6b. While the phase a sealed event (or one PROMISES seals) was cast in is open, no
    viewer sees it, or anything carrying it, in a stream, in history, or on the board."""
    stream = {v: streamed(run, v) for v in run.viewers}
    said = [Said.of(e.data) for e in run.events]
    for secret in _secrets(run, Visibility.sealed):
        key = secret.opened
        carriers = [e for e in run.events if twin(said[secret.index], said[e.index])]
        window = []
        for step in run.steps[secret.step :]:
            if step.after.key != key:
                break
            window.append(step)
        for step in window:
            for viewer in run.viewers:
                history, now = reader(run, step, viewer)
                for carrier in carriers:
                    if carrier.index > step.last_event:
                        continue
                    assert carrier.index not in stream[viewer], (
                        f"sealed: {viewer}'s stream carries {carrier.type} {carrier.data} while {key} is open"
                    )
                    assert not may_see(history, carrier.visibility, carrier.key, now), (
                        f"sealed: {viewer}'s history shows {carrier.type} {carrier.data} while {key} is open"
                    )
        for viewer, board in _boards(run, window):
            assert not twin(said[secret.index], board), (
                f"sealed: the board shows {viewer} {secret.type} {secret.data} while {key} is open"
            )


def check_nobody(run: Run) -> None:
    """6c. An event for nobody (or one PROMISES keeps from everyone) is shown to nobody, and
    no event anyone may ever see, nor any board, carries what it says."""
    said = [Said.of(e.data) for e in run.events]
    secrets = _secrets(run, Visibility.nobody)
    for secret in secrets:
        for event in run.events:  # itself too, when a ruleset shows it to anyone
            if event.visibility != Visibility.nobody and twin(said[secret.index], said[event.index]):
                raise AssertionError(
                    f"nobody: {event.type} {event.data} (to {event.visibility}) carries "
                    f"{secret.type} {secret.data}"
                )
    if secrets:
        for viewer, board in _boards(run, run.steps):
            for secret in secrets:
                assert not twin(said[secret.index], board), (
                    f"nobody: the board shows {viewer} {secret.type} {secret.data}"
                )


def _hidden(step: Step) -> bool:
    return bool(step.events) and all(e.visibility == Visibility.nobody for e in step.events)


def _shown(run: Run, steps: Sequence[Step]) -> dict[str, list[Any]]:
    """Return, per viewer, all a viewer is shown over some steps: events (streamed and in
    history), their view and their options after each."""
    first = steps[0].events[0].index if steps[0].events else steps[0].last_event + 1
    shown: dict[str, list[Any]] = {}
    for viewer in run.viewers:
        stream = streamed(run, viewer)
        got: list[Any] = []
        for step in steps:
            history, now = reader(run, step, viewer)
            got.append([(e.type, e.data) for e in step.events if e.index in stream])
            got.append(
                [
                    (e.type, e.data)
                    for e in run.events[first : step.last_event + 1]
                    if may_see(history, e.visibility, e.key, now)
                ]
            )
            view = run.view(step, viewer)
            board = view.board.model_dump(mode="json") if view.board is not None else None
            got.append((sorted(view.roles), sorted(view.teammates), board))
            got.append([o.model_dump(mode="json") for o in run.offered(step, viewer)])
        shown[viewer] = got
    return shown


def _openings(run: Run) -> Iterator[list[Step]]:
    """Yield the steps taken in each opening of a phase, the one that closed it last."""
    window: list[Step] = []
    for step in run.steps[1:]:
        window.append(step)
        if step.after.key != step.before.key:  # type: ignore[union-attr]
            yield window
            window = []
    if window:
        yield window


def check_hidden_choices_do_not_interfere(run: Run, limit: int = 3) -> int:
    """6d. What nobody may see changes nothing anyone is shown: two players' last actions of a
    phase that are told only to nobody, swapped (each offered to its new actor), leave every
    viewer's events, view and options the same until the phase closes. Return the swaps tried."""
    tried = 0
    plan = run.plan()
    for window in _openings(run):
        acts = [s for s in window if s.kind == "act"]
        # Each actor's last word in the phase: an earlier one is overridden whatever it was.
        last = [s for n, s in enumerate(acts) if all(t.actor != s.actor for t in acts[n + 1 :])]
        for first, second in itertools.combinations(last, 2):
            if tried >= limit:
                return tried
            if not _hidden(first) or not any(e.visibility == Visibility.nobody for e in second.events):
                continue
            assert first.actor is not None
            assert second.actor is not None
            assert first.body is not None
            assert second.body is not None
            if first.body == second.body:
                continue
            swapped = list(plan)
            swapped[first.index - 1] = ("act", first.actor, second.body)
            swapped[second.index - 1] = ("act", second.actor, first.body)
            # Only a game that could have been played: each body offered to its new actor.
            if not is_listed(run.rules.options(run.steps[first.index - 1].state, first.actor), second.body):
                continue
            upto, _ = run.replay(swapped, second.index - 1)
            if not is_listed(upto.options(second.actor), first.body):
                continue
            end = window[-1].index
            again, taken = run.replay(swapped, end)
            assert all(taken), "hidden: the swapped game refused a call the first one took"
            tried += 1
            shown, swapped_shown = (
                _shown(run, run.steps[first.index : end + 1]),
                _shown(again, again.steps[first.index : end + 1]),
            )
            for viewer in run.viewers:
                assert shown[viewer] == swapped_shown[viewer], (
                    f"hidden: {first.actor}'s {first.body} and {second.actor}'s {second.body}, told to "
                    f"nobody, swapped, change what {viewer} is shown"
                )
    return tried


def check_projection(run: Run) -> None:
    """6. Nobody is shown what the ruleset keeps from them."""
    check_roles(run)
    check_sealed(run)
    check_nobody(run)
    check_hidden_choices_do_not_interfere(run)


def _kept(run: Run, event: Emitted) -> str:
    """Return whom an event is kept to: its own audience, or the one PROMISES holds it to."""
    promised = PROMISES.get(run.rules.name, {}).get(event.type)
    return promised.value if promised is not None else event.visibility


def _public(kept: str, opened: str | None, step: Step) -> bool:
    """Return whether what is kept to `kept` (cast while `opened` was open) is public at a step:
    said to the room; sealed, once its phase closed; a team's or a player's, once the game is over."""
    if kept == Visibility.room:
        return True
    if kept == Visibility.nobody:
        return False
    if step.after.winner is not None:
        return True
    return kept == Visibility.sealed and step.after.key != opened


def check_spectator(run: Run) -> None:
    """7. A spectator (no seat, no team) is shown what every player may see, and nothing more.
    Live: the events every player's stream carries, none kept from the room (a team's, a
    player's, a sealed one, one for nobody). In history, at each step: the events every player
    may read there, each public by then. Its `view`: only roles every player's view shows, no
    teammates, no option, and a board that tells nothing kept from it that no event it may see
    tells too (nor a role not every player sees)."""
    spectator, players = run.spectator, set(run.players)
    stream = streamed(run, spectator)
    everyone = frozenset.intersection(*(streamed(run, p) for p in run.players))
    for event in run.events:
        carried, every = event.index in stream, event.index in everyone
        if carried == every and not (carried and _kept(run, event) != Visibility.room):
            continue
        what = f"{event.type} {event.data} (to {event.visibility}, kept to {_kept(run, event)})"
        assert carried, f"spectator: the stream misses {what}, which every player's carries"
        assert every, f"spectator: the stream carries {what}, which a player's does not"
        raise AssertionError(f"spectator: the stream carries {what}")
    # History is read per audience (and what it is kept to, and the phase it was cast in):
    # events that share them are shown or kept together.
    groups: dict[tuple[str, str | None, str, str | None], list[int]] = {}
    for event in run.events:
        audience = (event.visibility, event.key, _kept(run, event), event.opened)
        groups.setdefault(audience, []).append(event.index)
    said: dict[int, Said] = {}
    boards: dict[str, tuple[Said, set[tuple[str, str, str]]]] = {}
    twins: dict[tuple[int, str], bool] = {}
    # Who may read an audience depends only on the readers and when they read: asked once.
    memo: dict[tuple[Viewer, Now, tuple[Viewer, ...]], dict[tuple[str, str | None], tuple[bool, bool]]] = {}
    for step in run.steps:
        where = f"at step {step.index} ({step.after.key})"
        watcher, now = reader(run, step, spectator)
        readers = tuple(reader(run, step, p)[0] for p in run.players)
        decided = memo.setdefault((watcher, now, readers), {})
        kept_from: list[int] = []  # what the spectator is neither streamed nor shown in history
        for (visibility, key, kept, opened), indices in groups.items():
            if indices[0] > step.last_event:
                break  # groups are in the order of their first event
            if (visibility, key) not in decided:
                decided[visibility, key] = (
                    may_see(watcher, visibility, key, now),
                    all(may_see(r, visibility, key, now) for r in readers),
                )
            mine, every = decided[visibility, key]
            if mine != every or (mine and not _public(kept, opened, step)):
                event = run.events[indices[0]]
                what = f"{event.type} {event.data} (to {visibility}, kept to {kept}) {where}"
                assert mine or not every, f"spectator: history hides {what}, which every player may read"
                assert every, f"spectator: history shows {what}, which not every player may read"
                raise AssertionError(f"spectator: history shows {what}, not public yet")
            if not mine:
                kept_from.extend(i for i in indices if i <= step.last_event and i not in stream)
        view = run.view(step, spectator)
        common = frozenset.intersection(*(run.view(step, p).roles for p in run.players))
        assert view.roles <= common, (
            f"spectator: view shows the roles of {set(view.roles - common)}, not every player's, {where}"
        )
        assert not view.teammates, f"spectator: view names teammates {view.teammates} {where}"
        offered = run.offered(step, spectator)
        assert not offered, f"spectator: offered {[o.model_dump(mode='json') for o in offered]} {where}"
        if view.board is None:
            continue
        text = view.board.model_dump_json()
        if text not in boards:
            data = view.board.model_dump(mode="json")
            boards[text] = (Said.of(data), claims(data, players))
        board, named = boards[text]
        truth = run.seats(step)
        for pid, kind, value in named:
            assert pid in common or getattr(truth[pid], kind) != value, (
                f"spectator: the board tells the {kind} of {pid}, not every player's view shows it, {where}"
            )
        for index in kept_from:
            if index not in said:
                said[index] = Said.of(run.events[index].data)
            if (index, text) not in twins:
                twins[index, text] = twin(said[index], board)
            if not twins[index, text]:
                continue
            # Kept from the spectator, yet on its board: only if an event it may see tells it too.
            hidden = set(kept_from)
            seen = [i for i in range(step.last_event + 1) if i not in hidden]
            if not any(twin(said[index], Said.of(run.events[i].data)) for i in seen):
                event = run.events[index]
                raise AssertionError(
                    f"spectator: the board carries {event.type} {event.data} (to {event.visibility}) {where}"
                )


def check_all(run: Run) -> None:
    """Run every check on a played game."""
    check_options(run)
    check_dump(run)
    check_deterministic(run)
    check_ends(run)
    check_events(run)
    check_projection(run)
    check_spectator(run)
