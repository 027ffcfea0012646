"""Game commands: start, act, advance and the deadline, each inside one transaction under the
room's row lock. The rules are the room's ruleset (backend.games.registry); this module
loads its state, applies a rule, and writes the new rows and events. It never names a game."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import MISSING, BaseModel
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.contract import api, events
from backend.core.db import appended, session_driver
from backend.core.problems import NotHost, RoomNotFound, Unauthorized
from backend.domain.errors import RuleError
from backend.domain.lobby import RoomNotInLobby
from backend.game import repository
from backend.games import history, protocol
from backend.games.errors import GameNotFinished, GameNotFound, GameNotInProgress, PhaseClosed
from backend.games.projection import Now, Viewer, may_see
from backend.games.protocol import Position, ResultRecord, Ruleset, VoteRecord
from backend.games.registry import ruleset
from backend.persistence.events import NewEvent, append_events
from backend.persistence.tables import (
    IdempotencyRow,
    PlayerData,
    PlayerRecord,
    PlayerRow,
    RoomData,
    RoomRecord,
    RoomRow,
)
from backend.rooms import repository as rooms_repository
from backend.rooms.service import Actor, Committed, closed_room, locked_room
from backend.rooms.views import game_view, now_of, player_view, room_view, vote_view

_rng = random.SystemRandom()


class IdempotencyKeyReused(RuleError):
    code = "idempotency_key_reused"
    status = 409


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json")
    return data


@dataclass
class Table:
    """One room's game as loaded under its lock: the rows, the ruleset, and its state."""

    room: RoomData
    # The players dealt in (those who left included), by id.
    players: Mapping[str, PlayerData]
    rules: Ruleset[Any, Any]
    state: Any
    # The players in the room now, by seat.
    present: Sequence[PlayerData]
    # The events the last write appended, in order.
    written: list[NewEvent] = field(default_factory=list)


async def _load(session: AsyncSession, room: RoomData) -> Table:
    """Return the room's game: its ruleset, state and players (one read)."""
    rules = ruleset(room.ruleset)
    rows = await repository.table_players(await session_driver(session), room.id)
    assert room.game is not None, "a running room has its game's state"
    dealt = {str(p.id): p for p in rows if p.role is not None}
    present = [p for p in rows if p.left_at is None]
    return Table(room, dealt, rules, rules.load(room.game), present)


async def _write(
    session: AsyncSession,
    table: Table,
    facts: Sequence[Any],
    before: Any | None,
    after: Any,
    now: datetime | None = None,
    answer: Callable[[list[NewEvent]], IdempotencyRow | None] | None = None,
) -> int:
    """Write what the facts say happened, in one statement: the room's state and phase, the
    rows the facts record, the seats that changed, the events, and the command's first answer
    under its idempotency key (`answer`, given the events about to be appended).

    `before` None: the game is being dealt. `now` is the database clock when the command
    already read it (deadlines count from it).
    """
    conn = await session_driver(session)
    room, players, rules = table.room, table.players, table.rules
    now = now or await repository.clock(conn)

    def deadline(phase: str) -> datetime:
        return now + timedelta(seconds=rules.phase_seconds(room.settings, phase))

    new_events: list[NewEvent] = []
    votes: list[dict[str, Any]] = []
    results: dict[tuple[int, str, int], ResultRecord] = {}
    for fact in facts:
        audience = rules.audience(fact)
        for emit in rules.to_events(fact, deadline):
            new_events.append(NewEvent(emit.type, _dump(emit.data), audience.visibility, audience.key))
        record = rules.record(fact)
        if isinstance(record, VoteRecord):
            votes.append(_vote_row(room, record, audience, room.last_seq + len(new_events)))
        elif isinstance(record, ResultRecord):
            key = (record.round, record.phase, record.attempt)
            results[key] = _merge(results.get(key), record)

    seats: list[PlayerData] = []
    for seat in rules.seats(after):
        row = players[seat.player_id]
        if (row.role, row.team, row.alive) != (seat.role, seat.team, seat.alive):
            for name, value in (("role", seat.role), ("team", seat.team), ("alive", seat.alive)):
                _set(row, name, value)
            seats.append(row)
    was = rules.position(before) if before is not None else None
    position = rules.position(after)
    changes: dict[str, Any] = {"game": rules.dump(after), "round": position.round, "phase": position.phase}
    if was is None or was.key != position.key:
        changes["phase_ends_at"] = deadline(position.phase) if position.phase is not None else None
    new_events += _options_changed(table, before, after)
    if position.winner is not None and (was is None or was.winner is None):
        changes |= {"status": "finished", "winner": position.winner, "phase": None}
        changes |= {"phase_ends_at": None, "ended_at": now}
        # The final event shows every vote: those of this command are written first.
        await repository.insert_votes(session, votes)
        votes = []
        for name, value in changes.items():
            _set(room, name, value)
        new_events.append(await _finished(session, table, position))
    for name, value in changes.items():
        _set(room, name, value)
    first = room.last_seq + 1
    last = room.last_seq + len(new_events)
    first_answer = answer(new_events) if answer is not None else None
    await repository.write_command(
        conn,
        [
            room.id,
            json.dumps(room.game),
            room.round,
            room.phase,
            room.phase_ends_at,
            room.status,
            room.winner,
            room.ended_at,
            last,
            [first + i for i in range(len(new_events))],
            [e.type for e in new_events],
            [json.dumps(e.data) for e in new_events],
            [e.visibility.value for e in new_events],
            [e.audience for e in new_events],
            *_columns(votes, _VOTE_COLUMNS),
            *_columns([_result_row(room, r) for r in results.values()], _RESULT_COLUMNS),
            [p.id for p in seats],
            [p.role for p in seats],
            [p.team for p in seats],
            [p.alive for p in seats],
            *_answer_args(first_answer),
            room.game_number,
        ],
    )
    if new_events:
        _set(room, "last_seq", last)
        _set(room, "state_seq", last)
        appended(session, room.id, last)  # rung by Database.transaction once committed
    table.written = new_events
    return room.last_seq


def _set(row: Any, name: str, value: Any) -> None:
    """Set a field of a row the write has already stored: no ORM flush for it (a plain record
    just takes it)."""
    if isinstance(row, PlayerRecord | RoomRecord):
        setattr(row, name, value)
    else:
        set_committed_value(row, name, value)


_VOTE_COLUMNS = (
    "round", "phase", "attempt", "action", "voter_id", "target_player_id", "choice", "visibility", "audience",
    "seq",
)  # fmt: skip
_RESULT_COLUMNS = ("round", "phase", "attempt", "tally", "eliminated_player_id", "details")
_JSON_COLUMNS = frozenset({"tally", "details"})


def _columns(rows: list[dict[str, Any]], names: tuple[str, ...]) -> list[list[Any]]:
    """Return rows as one list per column (for unnest), JSON columns as JSON text."""
    return [
        [json.dumps(r[n]) if n in _JSON_COLUMNS and r[n] is not None else r[n] for r in rows] for n in names
    ]


def _answer_args(row: IdempotencyRow | None) -> list[Any]:
    if row is None:
        return [None, None, None, None, None]
    return [row.player_id, row.key, row.request_hash, row.status_code, json.dumps(row.body)]


def _vote_row(room: RoomData, record: VoteRecord, audience: protocol.Audience, seq: int) -> dict[str, Any]:
    return {
        "room_id": room.id,
        "game": room.game_number,
        "round": record.round,
        "phase": record.phase,
        "attempt": record.attempt,
        "action": record.action,
        "voter_id": uuid.UUID(record.voter_id),
        "target_player_id": uuid.UUID(record.target_id) if record.target_id else None,
        "choice": record.choice,
        "visibility": audience.visibility.value,
        "audience": audience.key,
        "seq": seq,
    }


def _merge(first: ResultRecord | None, more: ResultRecord) -> ResultRecord:
    """Return one phase's result from the records its close produced (details lists add up)."""
    if first is None:
        return more
    details = dict(first.details)
    for name, items in more.details.items():
        details[name] = [*details.get(name, []), *items]
    return ResultRecord(
        first.round,
        first.phase,
        first.attempt,
        first.tally if more.tally is None else more.tally,
        first.eliminated_player_id or more.eliminated_player_id,
        details,
    )


def _result_row(room: RoomData, result: ResultRecord) -> dict[str, Any]:
    return {
        "room_id": room.id,
        "game": room.game_number,
        "round": result.round,
        "phase": result.phase,
        "attempt": result.attempt,
        "tally": result.tally,
        "eliminated_player_id": uuid.UUID(result.eliminated_player_id)
        if result.eliminated_player_id
        else None,
        "details": result.details,
    }


def _options_changed(table: Table, before: Any | None, after: Any) -> list[NewEvent]:
    """Tell each present player whose options changed what they may do now (to them alone).

    When a phase opens, everyone who may act in it (or could in the last) is told, even with
    options equal to the last phase's: a client clears its options when a phase closes.
    """
    rules = table.rules
    opened = before is None or rules.position(before).key != rules.position(after).key
    changed = []
    for row in table.present:
        pid = str(row.id)
        if pid not in table.players:
            continue  # joined too late to be dealt in: never has options
        now_options = rules.options(after, pid) if rules.position(after).winner is None else []
        was = rules.options(before, pid) if before is not None else []
        if now_options == was and not (opened and now_options):
            continue
        data = events.OptionsChangedData(player_id=row.id, options=now_options)
        changed.append(NewEvent("options.changed", _dump(data), protocol.Visibility.player, pid))
    return changed


async def _finished(session: AsyncSession, table: Table, position: Position) -> NewEvent:
    """Return `game.finished`: the winner, every role, every vote but those shown to nobody."""
    room = table.room
    final = await repository.final_votes(session, room.id, room.game_number)
    everyone = {**{p.id: p for p in table.players.values()}, **{p.id: p for p in table.present}}
    assert position.winner is not None
    finished = events.GameFinishedData(
        winner=api.Team(position.winner),
        players=[player_view(p, room, visible=True) for p in sorted(everyone.values(), key=lambda p: p.seat)],
        votes=[vote_view(v) for v in final if v.visibility != protocol.Visibility.nobody],
    )
    return NewEvent("game.finished", _dump(finished))


async def _lock(
    session: AsyncSession, room_id: uuid.UUID, actor: Actor, key: str | None = None
) -> repository.Locked:
    """Return the room locked until the transaction ends, the clock, and the caller's first
    answer under `key` (one round trip)."""
    locked = await repository.lock_room_raw(await session_driver(session), room_id, actor.player_id, key)
    if locked is None:
        raise RoomNotFound("No room with this id.")
    return locked


async def _running(session: AsyncSession, room: RoomData, actor: Actor) -> tuple[Table, PlayerData]:
    """Return the locked room's game and the caller, or refuse: closed, not in it, not running."""
    if room.status == "closed":
        raise closed_room()
    table = await _load(session, room) if room.game is not None else None
    if table is not None:
        me = next((p for p in table.present if p.id == actor.player_id), None)
    else:
        me = await rooms_repository.present_player(session, room.id, actor.player_id)
    if me is None:
        raise Unauthorized("This token's player is no longer in the room.")
    if room.status != "in_progress" or table is None:
        raise GameNotInProgress(f"The room is {room.status}; the game is not running.")
    return table, me


async def start_game(session: AsyncSession, room_id: uuid.UUID, actor: Actor) -> tuple[api.Room, Committed]:
    """Deal the game and open its first phase: host only, in the lobby."""
    room, players = await _hosted(session, room_id, actor, "start the game")
    if room.status != "lobby":
        raise RoomNotInLobby(f"The room is {room.status}; a game starts from the lobby.")
    return await _deal(session, room, players)


async def rematch_game(session: AsyncSession, room_id: uuid.UUID, actor: Actor) -> tuple[api.Room, Committed]:
    """Deal another game to the players present, once the room's game is finished: host only.

    Every seat of the room, those who left during the earlier game included, loses its role,
    team and death first: the command path reads the players dealt in as those with a role
    (repository._TABLE_PLAYERS), and a departed player must not be dealt into this game.
    """
    room, players = await _hosted(session, room_id, actor, "start a rematch")
    if room.status != "finished":
        raise GameNotFinished(f"The room is {room.status}; a rematch follows a finished game.")
    await repository.reset_seats(session, room.id)
    for player in players:
        for name, value in (("role", None), ("team", None), ("alive", True)):
            set_committed_value(player, name, value)
    room.winner = None
    room.ended_at = None  # no longer ended: the retention purge waits for this game's end
    return await _deal(session, room, players)


async def _hosted(
    session: AsyncSession, room_id: uuid.UUID, actor: Actor, what: str
) -> tuple[RoomRow, list[PlayerRow]]:
    """Return the room locked (refused if closed) and its present players, the caller their host."""
    room = await locked_room(session, room_id)
    players = list(await rooms_repository.present_players(session, room.id))
    if not any(p.id == actor.player_id for p in players):
        raise Unauthorized("This token's player is no longer in the room.")
    if room.host_player_id != actor.player_id:
        raise NotHost(f"Only the host may {what}.")
    return room, players


async def _deal(session: AsyncSession, room: RoomRow, players: list[PlayerRow]) -> tuple[api.Room, Committed]:
    """Deal the room's next game to `players` with the room's settings and open its first
    phase: `game.started` (the room's game number one higher), then the deal."""
    rules = ruleset(room.ruleset)
    state, facts, counts = rules.setup([str(p.id) for p in players], room.settings, _rng)
    room.status = "in_progress"
    room.game_number += 1
    table = Table(room, {str(p.id): p for p in players}, rules, state, players)
    now = await repository.db_clock(session)
    if room.idle_since is not None:
        room.idle_since = now  # nobody streams: the game's idle time counts from its start
    position = rules.position(state)
    room.round, room.phase = position.round, position.phase
    room.phase_ends_at = (
        now + timedelta(seconds=rules.phase_seconds(room.settings, position.phase))
        if position.phase
        else None
    )
    # game.started first, with the room as the game opens; then the deal and the first phase.
    started = events.GameStartedData(room=room_view(room, len(players)), roles=counts)
    await append_events(session, room, [NewEvent("game.started", _dump(started))])
    last_seq = await _write(session, table, facts, None, state, now)
    return room_view(room, len(players)), Committed(room.id, last_seq)


def _guard(rules: Ruleset[Any, Any], state: Any, body: BaseModel | None) -> None:
    """Refuse an action or advance meant for a phase that is no longer the open one."""
    if body is None:
        return
    position = rules.position(state)
    wanted = {
        name: value
        for name in ("round", "phase", "attempt")
        if (value := getattr(body, name, MISSING)) is not MISSING and value is not None
    }
    now = {"round": position.round, "phase": position.phase, "attempt": position.attempt}
    if any((v.value if isinstance(v, api.Phase) else v) != now[k] for k, v in wanted.items()):
        asked = ", ".join(f"{k} {v.value if isinstance(v, api.Phase) else v}" for k, v in wanted.items())
        raise PhaseClosed(f"{asked} is not open; it is round {position.round} {position.phase}.")


def request_hash(route: str, body: BaseModel) -> str:
    """Return the fingerprint of a request, to tell a retry from a different command."""
    canonical = json.dumps([route, body.model_dump(mode="json", exclude_unset=True)], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Answer:
    """The answer to an action: fresh, or the first one given under the same idempotency key."""

    status: int
    body: dict[str, Any]
    committed: Committed | None


# How a route shapes its answer: from the generic answer and the first event the action
# appended (the alias `/votes` answers in its own, older shape).
Shape = Callable[[api.ActionAccepted, NewEvent], dict[str, Any]]


async def perform_action(
    session: AsyncSession,
    room_id: uuid.UUID,
    actor: Actor,
    body: BaseModel,
    idempotency_key: str | None,
    *,
    route: str = "actions",
    shape: Shape | None = None,
) -> Answer:
    """Take one action of the room's ruleset: every game's one command path (HTTP and WebSocket).

    Four round trips: the room locked with the clock and any first answer, its players, the
    one write, the commit."""
    fingerprint = request_hash(route, body)
    locked = await _lock(session, room_id, actor, idempotency_key)
    if locked.first is not None:
        # A retry gets the first answer, whatever happened since (the room closed, say).
        if locked.first.request_hash != fingerprint:
            raise IdempotencyKeyReused("This Idempotency-Key was used with another request body.")
        return Answer(locked.first.status_code, locked.first.body, None)
    table, me = await _running(session, locked.room, actor)
    room, rules, before = table.room, table.rules, table.state
    action = rules.action(body)
    _guard(rules, before, body)
    now = locked.now
    if room.phase_ends_at is not None and room.phase_ends_at <= now:
        raise PhaseClosed("The phase's deadline has passed; it is closing.")
    position = rules.position(before)
    after, facts = rules.apply(before, str(me.id), action)
    first_seq = room.last_seq + 1
    assert position.phase is not None
    accepted = api.ActionAccepted(
        type=api.ActionType(body.type),  # type: ignore[attr-defined]
        round=position.round,
        phase=api.Phase(position.phase),
        seq=first_seq,
        phase_closed=rules.position(after).key != position.key,
    )
    data: dict[str, Any] = {}

    def answer(written: list[NewEvent]) -> IdempotencyRow | None:
        data.update(_dump(accepted) if shape is None else shape(accepted, written[0]))
        if idempotency_key is None:
            return None
        return IdempotencyRow(
            player_id=me.id, key=idempotency_key, request_hash=fingerprint, status_code=201, body=data
        )

    last_seq = await _write(session, table, facts, before, after, now, answer)
    return Answer(201, data, Committed(room.id, last_seq))


async def advance_phase(
    session: AsyncSession, room_id: uuid.UUID, actor: Actor, body: api.AdvanceRequest | None
) -> tuple[api.Room, Committed]:
    """Close the open phase now: host only; with a body, only if that phase is still open."""
    table, me = await _running(session, (await _lock(session, room_id, actor)).room, actor)
    if table.room.host_player_id != me.id:
        raise NotHost("Only the host may close a phase early.")
    _guard(table.rules, table.state, body)
    after, facts = table.rules.on_deadline(table.state)
    last_seq = await _write(session, table, facts, table.state, after)
    return room_view(table.room, len(table.present)), Committed(table.room.id, last_seq)


async def close_overdue_phase(session: AsyncSession) -> Committed | None:
    """Close one phase whose deadline has passed (database clock), if any room has one.

    Rooms another worker is closing are skipped, and the row lock plus the status and
    deadline check make each deadline fire once, also when several workers poll.
    """
    room = await repository.lock_overdue_room(session)
    if room is None:
        return None
    table = await _load(session, room)
    after, facts = table.rules.on_deadline(table.state)
    last_seq = await _write(session, table, facts, table.state, after)
    return Committed(room.id, last_seq)


async def game_span(
    session: AsyncSession, room_id: uuid.UUID, game: int | None
) -> tuple[int, int, int | None] | None:
    """Return game number `game` of the room (the newest when None) as its number, the seq of
    its `game.started` and that of the next game's (None for the newest): its events lie
    between. None when the room has played no game yet; GameNotFound for a game not played."""
    starts = await repository.game_starts(session, room_id)
    if game is None and not starts:
        return None
    number = len(starts) if game is None else game
    if not 1 <= number <= len(starts):
        raise GameNotFound(f"Game {number} has not been played in this room (it has had {len(starts)}).")
    return number, starts[number - 1], starts[number] if number < len(starts) else None


async def list_rounds(
    session: AsyncSession, room_id: uuid.UUID, actor: Actor, game: int | None = None
) -> api.RoundList:
    """Return the rounds of one game of the room (the newest when `game` is None), as far as
    the caller may see them: a player, or a spectator (who sees what every player may).

    Game N is the events from its `game.started` up to the next game's. An earlier game is
    over, so it reads as a finished one does (everything but what is shown to nobody).
    """
    room = await rooms_repository.get_room(session, room_id)
    if actor.spectator:
        if room is None:
            raise RoomNotFound("No room with this id.")
        viewer = Viewer(str(actor.player_id), None)
    else:
        if (
            room is None
            or (me := await rooms_repository.present_player(session, room_id, actor.player_id)) is None
        ):
            raise Unauthorized("This token's player is no longer in the room.")
        viewer = Viewer(str(me.id), me.team)
    span = await game_span(session, room.id, game)
    if span is None:
        return api.RoundList(game=0, rounds=[])
    number, after, before = span
    if before is None:  # the room's newest game: read as the room stands
        _, state = game_view(room, viewer.player_id)
        now = now_of(room, state)
    else:
        now = Now("finished")
    seen = [
        e
        for e in await repository.game_events(session, room.id, history.TYPES, after, before)
        if may_see(viewer, e.visibility, e.audience, now)
    ]
    return history.rounds(seen, number)
