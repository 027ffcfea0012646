"""Bots: a player that follows its room's events and acts on its options until the game ends.

A bot knows no game's rules. The server lists, in the state, the snapshot and each
`options.changed` event, what this player may do now (`api.Option`: the action's type, the
players that may be picked and how many, whether abstaining is allowed, the choices); a
strategy only picks among them. So the same bot plays mafia, missions and whatever comes next.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import MISSING

from roundtable.contract import api, events
from roundtable.errors import Conflict, RoundtableError, ServerUnreachable, Unavailable
from roundtable.session import Action, RoomSession, as_action


@dataclass
class View:
    """What a bot knows: itself, its role and teammates, the players, the open phase, its options."""

    me: uuid.UUID
    host: bool = False
    role: api.Role | None = None
    teammates: set[uuid.UUID] = field(default_factory=set)
    alive: set[uuid.UUID] = field(default_factory=set)
    present: set[uuid.UUID] = field(default_factory=set)
    """The players in the room now: who is alive when a new game (a rematch) starts."""
    nicknames: dict[uuid.UUID, str] = field(default_factory=dict)
    status: api.RoomStatus = api.RoomStatus.lobby
    round: int = 0
    phase: api.Phase | None = None
    attempt: int | None = None
    """The proposal of the round, where the ruleset counts them (missions); else None."""
    leader: uuid.UUID | None = None
    options: list[api.Option] = field(default_factory=list)
    """What this player may do now, as the server last said: the only source of a bot's moves."""
    winner: api.Team | None = None
    game: int = 0
    """Which game of the room this is (1 for the first, one more with each rematch)."""

    def new_game(self, game: int) -> None:
        """Forget the last game's deal: a rematch deals roles, teams and lives again."""
        self.game = game
        self.status = api.RoomStatus.in_progress
        self.role, self.teammates = None, set()
        self.alive = set(self.present)
        self.round, self.phase, self.attempt, self.leader = 0, None, None, None
        self.options, self.winner = [], None


def action_for(option: api.Option, *, targets: Sequence[uuid.UUID] = (), choice: str | None = None) -> Action:
    """Return the request that takes `option` with these targets (none abstains) or this choice.

    The shape follows the option alone: a `choice` when it lists choices, else
    `target_player_id` when it picks one, else `player_ids`. Raises ValueError for a pick the
    option does not offer, so a strategy's mistake shows here and not as a refused request.
    """
    body: dict[str, Any] = {"type": option.type.value}
    if option.choices:
        if choice not in option.choices:
            raise ValueError(f"{choice!r} is not one of {option.choices}")
        body["choice"] = choice
    else:
        picked = list(targets)
        if not set(picked) <= set(option.targets) or len(set(picked)) != len(picked):
            raise ValueError("targets must be distinct players of the option's targets")
        if not picked:
            if not option.abstain:
                raise ValueError(f"this {option.type.value} must pick {option.pick}")
        elif len(picked) != option.pick:
            raise ValueError(f"this {option.type.value} picks {option.pick}, not {len(picked)}")
        if option.pick == 1:
            body["target_player_id"] = picked[0] if picked else None
        else:
            body["player_ids"] = picked
    return as_action(body)


class Strategy(Protocol):
    """How a bot plays: what to do with an option, and what (if anything) to say."""

    def choose(self, view: View, option: api.Option) -> Action:
        """Return the action that takes `option` (build it with `action_for`)."""
        ...

    def say(self, view: View) -> str | None:
        """Return a chat line for the phase that just opened, or None."""
        ...


class RandomStrategy:
    """Picks at random among an option's targets (as many as it picks) or choices; abstains
    now and then where abstaining is allowed; says a word by day."""

    def __init__(self, seed: int | None = None, abstain: float = 0.1) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - a game move, not a secret
        self.abstain = abstain

    def choose(self, view: View, option: api.Option) -> Action:
        if option.choices:
            return action_for(option, choice=self.rng.choice(option.choices))
        if option.abstain and (len(option.targets) < option.pick or self.rng.random() < self.abstain):
            return action_for(option)
        return action_for(option, targets=self.rng.sample(option.targets, option.pick))

    def say(self, view: View) -> str | None:
        if view.phase is api.Phase.day and self.rng.random() < 0.3:
            return self.rng.choice(["Good morning.", "I have my suspicions.", "Trust me.", "Hmm."])
        return None


STRATEGIES: dict[str, Callable[[int | None], Strategy]] = {"random": lambda seed: RandomStrategy(seed)}


class Bot:
    """A player that plays to the end: follows its stream, acts on its options and chats through its strategy.

    Subclass and override `on_options` or `on_phase` (or give another Strategy) to play
    differently. `on_progress` receives a line per phase and per result (for a CLI's output).
    `run(games=N)` plays N games in the room: a host bot starts each next one with a rematch,
    and every bot plays it with the role it is dealt then.
    """

    def __init__(
        self,
        session: RoomSession,
        strategy: Strategy,
        *,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.session = session
        self.strategy = strategy
        self.view = View(me=session.player_id, host=session.room.host_player_id == session.player_id)
        self.on_progress = on_progress or (lambda line: None)
        self.ready = asyncio.Event()
        """Set once the bot's stream delivered its first item: from then on it sees every event."""
        # The options already taken, by phase opening: the server keeps listing an option after
        # it was taken where the action may still be changed, and one move is enough.
        self._taken: set[tuple[int, api.Phase | None, int | None, api.ActionType]] = set()
        self.played: list[tuple[api.Role | None, api.Team]] = []
        """Each finished game: the role this bot held at its end, and the winner."""

    async def run(self, games: int = 1) -> api.Team:
        """Play until `games` games are finished (as host, start each next one with a
        rematch); return the last winner."""
        async for item in self.session.events():
            await self.handle(item)
            self.ready.set()
            if len(self.played) >= games:
                return self.played[-1][1]
            if isinstance(item, events.GameFinishedEvent) and self.view.host:
                await self.rematch()
        raise RuntimeError("the event stream ended")  # pragma: no cover - events() never ends by itself

    async def rematch(self) -> None:
        """Start the next game in the room, through a server restart; a rematch someone else
        already started (409) is fine."""
        for attempt in range(20):
            try:
                await self.session.rematch()
                return
            except Conflict:
                return
            except (ServerUnreachable, Unavailable):
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))

    async def handle(self, item: events.Snapshot | events.RoomEvent) -> None:
        """Update the view from one event; act when the options change, chat when a phase opens."""
        v = self.view
        if isinstance(item, events.Snapshot):
            state = item.data
            v.alive = {p.id for p in state.players if p.alive}
            v.present = {p.id for p in state.players}
            v.nicknames = {p.id: p.nickname for p in state.players}
            v.game = state.room.game
            v.status, v.round, v.phase = state.room.status, state.room.round, state.room.phase
            v.host = state.room.host_player_id == v.me
            v.role = state.me.role if state.me is not None else None
            v.teammates = set(state.teammates)
            if isinstance(state.board, api.MissionsBoard):
                v.attempt, v.leader = state.board.attempt, state.board.leader_player_id
            if v.status is api.RoomStatus.finished and state.room.winner is not None:
                v.winner = state.room.winner
                if not self.played:
                    self.played.append((v.role, v.winner))
                return
            if v.phase is not None:
                self.progress_phase()
            await self.on_options(list(state.options))
        elif isinstance(item, events.OptionsChangedEvent):
            if item.data.player_id == v.me:
                await self.on_options(list(item.data.options))
        elif isinstance(item, events.PlayerJoinedEvent):
            v.alive.add(item.data.player.id)
            v.present.add(item.data.player.id)
            v.nicknames[item.data.player.id] = item.data.player.nickname
        elif isinstance(item, events.PlayerLeftEvent):
            v.alive.discard(item.data.player_id)
            v.present.discard(item.data.player_id)
        elif isinstance(item, events.RoomUpdatedEvent):
            v.host = item.data.room.host_player_id == v.me
        elif isinstance(item, events.GameStartedEvent):
            v.new_game(item.data.room.game)
            v.host = item.data.room.host_player_id == v.me
            self._taken.clear()  # game 2's night 1 is not game 1's
            if v.game > 1:
                self.on_progress(f"game {v.game}")
        elif isinstance(item, events.RoleAssignedEvent):
            v.role, v.teammates = item.data.role, set(item.data.teammates)
        elif isinstance(item, events.LeaderChangedEvent):
            v.attempt, v.leader = item.data.attempt, item.data.leader_id
        elif isinstance(item, events.PhaseStartedEvent):
            v.round, v.phase = item.data.round, item.data.phase
            v.attempt = item.data.attempt if item.data.attempt is not MISSING else None
            self.progress_phase()
            await self.on_phase(v.round, v.phase)
        else:
            self.progress_result(item)
            if isinstance(item, events.PlayerEliminatedEvent):
                v.alive.discard(item.data.player_id)
            elif isinstance(item, events.GameFinishedEvent):
                v.status, v.winner = api.RoomStatus.finished, item.data.winner
                v.options = []
                self.played.append((v.role, item.data.winner))

    def progress_phase(self) -> None:
        v = self.view
        assert v.phase is not None
        attempt = f" (proposal {v.attempt})" if v.attempt is not None else ""
        self.on_progress(f"round {v.round} {v.phase.value}{attempt}: {len(v.alive)} alive")

    def progress_result(self, item: events.RoomEvent) -> None:
        """Tell `on_progress` about a result worth a line."""
        if isinstance(item, events.PlayerEliminatedEvent):
            role = f" ({item.data.role.value})" if item.data.role else ""
            self.on_progress(f"  {self.name(item.data.player_id)}{role} {item.data.cause.value}")
        elif isinstance(item, events.TeamProposedEvent):
            team = ", ".join(self.name(p) for p in item.data.player_ids)
            self.on_progress(f"  {self.name(item.data.leader_id)} proposes {team}")
        elif isinstance(item, events.ApprovalClosedEvent):
            approves = sum(v.choice is api.ApprovalChoice.approve for v in item.data.votes)
            verdict = "approved" if item.data.approved else f"rejected ({item.data.rejections} this round)"
            self.on_progress(f"  {verdict}: {approves} of {len(item.data.votes)} approve")
        elif isinstance(item, events.MissionClosedEvent):
            outcome = "succeeded" if item.data.succeeded else "failed"
            self.on_progress(f"  mission {item.data.round} {outcome} with {item.data.fails} fail(s)")

    async def on_options(self, options: list[api.Option]) -> None:
        """Take each option not taken yet in this phase, as the strategy chooses."""
        v = self.view
        v.options = options
        for option in options:
            taken = (v.round, v.phase, v.attempt, option.type)
            if taken in self._taken:
                continue
            self._taken.add(taken)
            await self.act(self.guarded(self.strategy.choose(v, option)))

    def guarded(self, action: Action) -> Action:
        """Return the action limited to the phase the bot saw it offered in, so a late retry is refused."""
        v = self.view
        if v.round < 1 or v.phase is None:
            return action
        update: dict[str, Any] = {"round": v.round, "phase": v.phase}
        if v.attempt is not None and "attempt" in type(action).model_fields:
            update["attempt"] = v.attempt
        return action.model_copy(update=update)

    async def act(self, action: Action, attempts: int = 20) -> bool:
        """Act, retrying through a server restart with the same Idempotency-Key (never twice);
        return whether the server took the action."""
        key = uuid.uuid4().hex
        for attempt in range(attempts):
            try:
                await self.session.act(action, idempotency_key=key)
                return True
            except Conflict:
                return False  # the phase closed before the action arrived: nothing to do
            except (ServerUnreachable, Unavailable):
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        return False

    def name(self, player_id: uuid.UUID) -> str:
        return self.view.nicknames.get(player_id, str(player_id)[:8])

    async def on_phase(self, round_: int, phase: api.Phase) -> None:
        """React to a phase that just opened: chat, if the strategy has something to say."""
        line = self.strategy.say(self.view)
        if line:
            # Chat is a nicety: a closed channel, a rate limit or a restart is fine.
            with contextlib.suppress(RoundtableError):
                await self.session.chat(line)
