"""Bots: players driven by a strategy, reacting to the room's events until the game ends."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from roundtable_client.errors import APIConnectionError

from roundtable.contract import api, events
from roundtable.errors import Conflict, RoundtableError, Unavailable
from roundtable.session import RoomSession


@dataclass
class View:
    """What a bot knows: itself, its role and teammates, who is alive, the open phase."""

    me: uuid.UUID
    host: bool = False
    role: api.Role | None = None
    teammates: set[uuid.UUID] = field(default_factory=set)
    alive: set[uuid.UUID] = field(default_factory=set)
    nicknames: dict[uuid.UUID, str] = field(default_factory=dict)
    status: api.RoomStatus = api.RoomStatus.lobby
    round: int = 0
    phase: api.Phase | None = None
    winner: api.Team | None = None

    def action(self) -> api.VoteAction | None:
        """Return what this player may vote on in the open phase, if anything."""
        if self.me not in self.alive or self.status is not api.RoomStatus.in_progress:
            return None
        if self.phase is api.Phase.vote:
            return api.VoteAction.eliminate
        if self.phase is api.Phase.night:
            return (
                {
                    api.Role.mafia: api.VoteAction.kill,
                    api.Role.doctor: api.VoteAction.protect,
                    api.Role.detective: api.VoteAction.investigate,
                }.get(self.role)
                if self.role
                else None
            )
        return None

    def targets(self, action: api.VoteAction) -> list[uuid.UUID]:
        """Return the legal targets of an action, in a stable order."""
        if action is api.VoteAction.kill:
            options = self.alive - self.teammates - {self.me}
        elif action is api.VoteAction.protect:
            options = set(self.alive)
        else:
            options = self.alive - {self.me}
        return sorted(options)


class Strategy(Protocol):
    """How a bot plays: whom to vote for, and what (if anything) to say."""

    def choose(self, view: View, action: api.VoteAction, targets: list[uuid.UUID]) -> uuid.UUID | None:
        """Return the target (None abstains)."""
        ...

    def say(self, view: View) -> str | None:
        """Return a chat line for the open phase, or None."""
        ...


class RandomStrategy:
    """Votes for a random legal target; abstains now and then; says a word by day."""

    def __init__(self, seed: int | None = None, abstain: float = 0.1) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - a game move, not a secret
        self.abstain = abstain

    def choose(self, view: View, action: api.VoteAction, targets: list[uuid.UUID]) -> uuid.UUID | None:
        if not targets or self.rng.random() < self.abstain:
            return None
        return self.rng.choice(targets)

    def say(self, view: View) -> str | None:
        if view.phase is api.Phase.day and self.rng.random() < 0.3:
            return self.rng.choice(["Good morning.", "I have my suspicions.", "Trust me.", "Hmm."])
        return None


STRATEGIES: dict[str, Callable[[int | None], Strategy]] = {"random": lambda seed: RandomStrategy(seed)}


class Bot:
    """A player that plays to the end: follows its stream, votes and chats through its strategy.

    Subclass and override `on_phase` (or give another Strategy) to play differently.
    `on_progress` receives a line per phase and per elimination (for a CLI's output).
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

    async def run(self) -> api.Team:
        """Play until the game is finished; return the winner."""
        async for item in self.session.events():
            await self.handle(item)
            self.ready.set()
            if self.view.winner is not None:
                return self.view.winner
        raise RuntimeError("the event stream ended")  # pragma: no cover - events() never ends by itself

    async def handle(self, item: events.Snapshot | events.RoomEvent) -> None:
        """Update the view from one event, and act when a phase opens."""
        v = self.view
        if isinstance(item, events.Snapshot):
            state = item.data
            v.alive = {p.id for p in state.players if p.alive}
            v.nicknames = {p.id: p.nickname for p in state.players}
            v.status, v.round, v.phase = state.room.status, state.room.round, state.room.phase
            v.host = state.room.host_player_id == v.me
            v.role = state.me.role
            v.teammates = set(state.teammates)
            if v.status is api.RoomStatus.finished and state.room.winner is not None:
                v.winner = state.room.winner
            elif v.phase is not None:
                self.on_progress(f"round {v.round} {v.phase.value}: {len(v.alive)} alive")
                await self.on_phase(v.round, v.phase)
        elif isinstance(item, events.PlayerJoinedEvent):
            v.alive.add(item.data.player.id)
            v.nicknames[item.data.player.id] = item.data.player.nickname
        elif isinstance(item, events.PlayerLeftEvent):
            v.alive.discard(item.data.player_id)
        elif isinstance(item, events.RoomUpdatedEvent):
            v.host = item.data.room.host_player_id == v.me
        elif isinstance(item, events.GameStartedEvent):
            v.status = api.RoomStatus.in_progress
        elif isinstance(item, events.RoleAssignedEvent):
            v.role, v.teammates = item.data.role, set(item.data.teammates)
        elif isinstance(item, events.PlayerEliminatedEvent):
            v.alive.discard(item.data.player_id)
            role = f" ({item.data.role.value})" if item.data.role else ""
            self.on_progress(f"  {self.name(item.data.player_id)}{role} {item.data.cause.value}")
        elif isinstance(item, events.PhaseStartedEvent):
            v.round, v.phase = item.data.round, item.data.phase
            self.on_progress(f"round {v.round} {v.phase.value}: {len(v.alive)} alive")
            await self.on_phase(v.round, v.phase)
        elif isinstance(item, events.GameFinishedEvent):
            v.status, v.winner = api.RoomStatus.finished, item.data.winner

    async def vote(self, target: uuid.UUID | None, round_: int, phase: api.Phase, attempts: int = 20) -> None:
        """Vote, retrying through a server restart with the same Idempotency-Key (never twice)."""
        key = uuid.uuid4().hex
        for attempt in range(attempts):
            try:
                await self.session.vote(target, round_=round_, phase=phase, idempotency_key=key)
                return
            except Conflict:
                return  # the phase closed before the vote arrived: nothing to do
            except (APIConnectionError, Unavailable):
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))

    def name(self, player_id: uuid.UUID) -> str:
        return self.view.nicknames.get(player_id, str(player_id)[:8])

    async def on_phase(self, round_: int, phase: api.Phase) -> None:
        """React to an open phase: vote when the phase lets this player, chat by day."""
        action = self.view.action()
        if action is not None:
            target = self.strategy.choose(self.view, action, self.view.targets(action))
            await self.vote(target, round_, phase)
        line = self.strategy.say(self.view) if self.session.player_id in self.view.alive else None
        if line:
            # Chat is a nicety: a closed channel, a rate limit or a restart is fine.
            with contextlib.suppress(RoundtableError, APIConnectionError):
                await self.session.chat(line)
