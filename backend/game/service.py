"""Game commands: start, vote, advance and the deadline, each inside one transaction under the
room's row lock. The rules are `backend.domain.mafia`; this module loads the game from its
rows, applies a rule, and writes the new rows and events."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import MISSING
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.contract import api, events
from backend.core.problems import NotHost, Unauthorized
from backend.domain import mafia
from backend.domain.errors import RuleError
from backend.domain.lobby import RoomNotInLobby
from backend.domain.visibility import may_see_investigation, may_see_night_tally
from backend.game import repository
from backend.persistence.events import NewEvent, append_events
from backend.persistence.tables import IdempotencyRow, PlayerRow, RoomRow
from backend.rooms import repository as rooms_repository
from backend.rooms.service import Actor, Committed, closed_room, locked_room
from backend.rooms.views import player_view, room_view, viewer_of, visible_votes, vote_view

PHASE_ORDER = {p.value: i for i, p in enumerate(mafia.Phase)}
_rng = random.SystemRandom()


class IdempotencyKeyReused(RuleError):
    code = "idempotency_key_reused"
    status = 422


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json")
    return data


def _id(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value is not None else None


@dataclass
class Table:
    """One room's game as loaded under its lock: the rows and the rules' view of them."""

    room: RoomRow
    players: dict[str, PlayerRow]
    game: mafia.Game


async def _load(session: AsyncSession, room: RoomRow) -> Table:
    players = list(await repository.dealt_players(session, room.id))
    ballots: dict[str, mafia.Ballot] = {}
    if room.phase is not None:
        for v in await repository.current_ballots(session, room.id, room.round, room.phase):
            ballots[str(v.voter_id)] = mafia.Ballot(
                str(v.voter_id),
                mafia.Action(v.action),
                str(v.target_player_id) if v.target_player_id else None,
            )
    seats = tuple(mafia.Seat(str(p.id), mafia.Role(p.role), p.alive) for p in players if p.role)
    game = mafia.Game(
        seats=seats,
        round=room.round,
        phase=mafia.Phase(room.phase) if room.phase else None,
        ballots=ballots,
        winner=mafia.Team(room.winner) if room.winner else None,
        reveal_on_death=game_reveal(room),
    )
    return Table(room, {str(p.id): p for p in players}, game)


def _seconds(room: RoomRow, phase: mafia.Phase) -> int:
    return int(room.settings[f"{phase.value}_seconds"])


async def _write(
    session: AsyncSession,
    table: Table,
    facts: Sequence[mafia.Fact],
    before: mafia.Game,
    after: mafia.Game,
    now: datetime | None = None,
) -> int:
    """Write what the facts say happened: rows, the room's round and phase, and the events.

    `now` is the database clock when the command already read it (deadlines count from it).
    """
    room, players = table.room, table.players
    now = now or await repository.db_clock(session)
    new_events: list[NewEvent] = []
    votes: list[dict[str, Any]] = []
    result: dict[str, Any] | None = None
    if before.phase is not None and (
        after.phase != before.phase or after.round != before.round or after.finished
    ):
        # The open phase closed: its result row, filled in by the facts below.
        result = {
            "room_id": room.id,
            "round": before.round,
            "phase": before.phase.value,
            "tally": None,
            "eliminated_player_id": None,
            "details": {"investigations": [], "protections": []},
        }

    def emit(type_: str, data: Any, fact: mafia.Fact) -> int:
        visibility, audience = mafia.audience_of(fact)
        new_events.append(NewEvent(type_, _dump(data), visibility, audience))
        return room.last_seq + len(new_events)

    for fact in facts:
        match fact:
            case mafia.RoleDealt(player_id=pid, role=role, teammates=teammates):
                player = players[pid]
                player.role, player.team = role.value, mafia.team_of(role).value
                session.add(player)
                data = events.RoleAssignedData(
                    player_id=player.id,
                    role=api.Role(role.value),
                    team=api.Team(player.team),
                    teammates=[uuid.UUID(t) for t in teammates],
                )
                emit("role.assigned", data, fact)
            case mafia.PhaseBegan(round=round_, phase=phase, killed_player_id=killed):
                room.round, room.phase = round_, phase.value
                room.phase_ends_at = now + timedelta(seconds=_seconds(room, phase))
                started = events.PhaseStartedData(
                    round=round_, phase=api.Phase(phase.value), ends_at=room.phase_ends_at
                )
                if phase is mafia.Phase.day:
                    started.killed_player_id = _id(killed)
                emit("phase.started", started, fact)
            case mafia.VoteCast(round=round_, phase=phase, action=action, voter_id=voter, target_id=target):
                cast = events.VoteCastData(
                    round=round_,
                    phase=api.Phase(phase.value),
                    action=api.VoteAction(action.value),
                    voter_id=uuid.UUID(voter),
                    target_player_id=_id(target),
                )
                seq = emit("vote.cast", cast, fact)
                votes.append(
                    {
                        "room_id": room.id,
                        "round": round_,
                        "phase": phase.value,
                        "action": action.value,
                        "voter_id": uuid.UUID(voter),
                        "target_player_id": _id(target),
                        "seq": seq,
                    }
                )
            case mafia.VoteClosed(
                round=round_, phase=phase, action=action, tally=tally, eliminated_player_id=out
            ):
                entries = [api.TallyEntry(target_player_id=_id(t), votes=n) for t, n in tally]
                closed = events.VoteClosedData(
                    round=round_,
                    phase=api.Phase(phase.value),
                    action=api.VoteAction(action.value),
                    tally=entries,
                    eliminated_player_id=_id(out),
                )
                emit("vote.closed", closed, fact)
                assert result is not None
                result["tally"] = [_dump(e) for e in entries]
                result["eliminated_player_id"] = _id(out)
            case mafia.Investigated(round=round_, detective_id=detective, target_id=target, team=team):
                answer = events.NightResultData(
                    round=round_,
                    detective_id=uuid.UUID(detective),
                    target_player_id=uuid.UUID(target),
                    team=api.Team(team.value),
                )
                emit("night.result", answer, fact)
                assert result is not None
                result["details"]["investigations"].append(
                    {"detective_id": detective, "target_player_id": target, "team": team.value}
                )
            case mafia.Protected(doctor_id=doctor, target_id=target):
                assert result is not None
                result["details"]["protections"].append({"doctor_id": doctor, "target_player_id": target})
            case mafia.Eliminated(round=round_, player_id=pid, cause=cause, role=role, revealed=revealed):
                player = players[pid]
                player.alive = False
                session.add(player)
                gone = events.PlayerEliminatedData(
                    round=round_,
                    player_id=player.id,
                    cause=events.EliminationCause(cause),
                    role=api.Role(role.value) if revealed else None,
                )
                emit("player.eliminated", gone, fact)
            case mafia.Finished(winner=winner):
                room.status, room.winner = "finished", winner.value
                room.phase, room.phase_ends_at = None, None
                room.ended_at = now
                await session.flush()
                await repository.insert_votes(session, votes)
                votes = []
                final = await repository.final_votes(session, room.id)
                present = {p.id: p for p in await rooms_repository.present_players(session, room.id)}
                everyone = {**{p.id: p for p in players.values()}, **present}
                finished = events.GameFinishedData(
                    winner=api.Team(winner.value),
                    players=[
                        player_view(p, room, None, reveal=True)
                        for p in sorted(everyone.values(), key=lambda p: p.seat)
                    ],
                    votes=[vote_view(v) for v in final],
                )
                emit("game.finished", finished, fact)
    if result is not None:
        await repository.record_phase_result(session, result)
    await repository.insert_votes(session, votes)
    session.add(room)
    await session.flush()
    return await append_events(session, room, new_events)


async def _running(session: AsyncSession, room_id: uuid.UUID, actor: Actor) -> tuple[Table, PlayerRow]:
    room = await locked_room(session, room_id)
    me = await rooms_repository.present_player(session, room.id, actor.player_id)
    if me is None:
        raise Unauthorized("This token's player is no longer in the room.")
    if room.status != "in_progress":
        raise mafia.GameNotInProgress(f"The room is {room.status}; the game is not running.")
    return await _load(session, room), me


async def start_game(session: AsyncSession, room_id: uuid.UUID, actor: Actor) -> tuple[api.Room, Committed]:
    """Deal the roles and open the first night: host only, in the lobby."""
    room = await locked_room(session, room_id)
    players = list(await rooms_repository.present_players(session, room.id))
    if not any(p.id == actor.player_id for p in players):
        raise Unauthorized("This token's player is no longer in the room.")
    if room.host_player_id != actor.player_id:
        raise NotHost("Only the host may start the game.")
    if room.status != "lobby":
        raise RoomNotInLobby(f"The room is {room.status}; a game starts from the lobby.")
    counts = room.settings.get("roles") or mafia.default_roles(len(players))
    game, facts = mafia.start(
        [str(p.id) for p in players], counts, reveal_on_death=game_reveal(room), rng=_rng
    )
    room.status = "in_progress"
    table = Table(room, {str(p.id): p for p in players}, game)
    # game.started first, with the room as the game opens; then the deal and the first night.
    now = await repository.db_clock(session)
    if room.idle_since is not None:
        room.idle_since = now  # nobody streams: the game's idle time counts from its start
    room.round, room.phase = 1, mafia.Phase.night.value
    room.phase_ends_at = now + timedelta(seconds=_seconds(room, mafia.Phase.night))
    started = events.GameStartedData(
        room=room_view(room, len(players)), roles=api.RoleCounts.model_validate(counts)
    )
    await append_events(session, room, [NewEvent("game.started", _dump(started))])
    before = mafia.Game(seats=game.seats, phase=None)
    last_seq = await _write(session, table, facts, before, game, now)
    return room_view(room, len(players)), Committed(room.id, last_seq)


def game_reveal(room: RoomRow) -> bool:
    """Return whether the room reveals a role on death."""
    return bool(room.settings.get("reveal_on_death", True))


def _guard(game: mafia.Game, round_: int | None, phase: api.Phase | None) -> None:
    assert game.phase is not None
    if (round_ is not None and round_ != game.round) or (
        phase is not None and phase.value != game.phase.value
    ):
        wanted = f"round {round_ or game.round} {phase.value if phase else game.phase.value}"
        raise mafia.PhaseClosed(f"{wanted} is not open; it is round {game.round} {game.phase.value}.")


async def _check_deadline(session: AsyncSession, room: RoomRow) -> datetime:
    """Return the database clock; refuse a command that arrives after the phase's deadline,
    even when the scheduler has not closed the phase yet."""
    now = await repository.db_clock(session)
    if room.phase_ends_at is not None and room.phase_ends_at <= now:
        raise mafia.PhaseClosed("The phase's deadline has passed; it is closing.")
    return now


def request_hash(body: api.VoteRequest) -> str:
    """Return the fingerprint of a vote request, to tell a retry from a different vote."""
    canonical = json.dumps(body.model_dump(mode="json", exclude_unset=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class VoteAnswer:
    """The answer to a vote: fresh, or the first one given under the same idempotency key."""

    status: int
    body: dict[str, Any]
    committed: Committed | None


async def cast_vote(
    session: AsyncSession,
    room_id: uuid.UUID,
    actor: Actor,
    body: api.VoteRequest,
    idempotency_key: str | None,
) -> VoteAnswer:
    """Cast or change the caller's vote; close the phase when it was the last one awaited."""
    room = await locked_room(session, room_id, closed_ok=True)
    fingerprint = request_hash(body)
    if idempotency_key is not None:
        first = await repository.idempotent_answer(session, actor.player_id, idempotency_key)
        if first is not None:
            if first.request_hash != fingerprint:
                raise IdempotencyKeyReused("This Idempotency-Key was used with another request body.")
            return VoteAnswer(first.status_code, first.body, None)
    if room.status == "closed":
        raise closed_room()  # a retry of a vote taken before the room closed got its answer
    table, me = await _running(session, room.id, actor)
    game = table.game
    _guard(
        game,
        body.round if body.round is not MISSING else None,
        body.phase if body.phase is not MISSING else None,
    )
    now = await _check_deadline(session, room)
    target = str(body.target_player_id) if body.target_player_id is not None else None
    voted, facts = mafia.vote(game, str(me.id), target)
    cast = facts[0]
    assert isinstance(cast, mafia.VoteCast)
    closed = mafia.everyone_acted(voted)
    after = voted
    if closed:
        after, more = mafia.advance(voted)
        facts = facts + more
    first_seq = room.last_seq + 1
    last_seq = await _write(session, table, facts, game, after, now)
    answer = api.VoteAccepted(
        vote=api.Vote(
            round=cast.round,
            phase=api.Phase(cast.phase.value),
            action=api.VoteAction(cast.action.value),
            voter_id=me.id,
            target_player_id=body.target_player_id,
        ),
        seq=first_seq,
        phase_closed=closed,
    )
    data = _dump(answer)
    if idempotency_key is not None:
        await repository.store_idempotent_answer(
            session,
            IdempotencyRow(
                player_id=me.id, key=idempotency_key, request_hash=fingerprint, status_code=201, body=data
            ),
        )
    return VoteAnswer(201, data, Committed(room.id, last_seq))


async def advance_phase(
    session: AsyncSession, room_id: uuid.UUID, actor: Actor, body: api.AdvanceRequest | None
) -> tuple[api.Room, Committed]:
    """Close the open phase now: host only; with a body, only if that phase is still open."""
    table, me = await _running(session, room_id, actor)
    if table.room.host_player_id != me.id:
        raise NotHost("Only the host may close a phase early.")
    if body is not None:
        _guard(table.game, body.round, body.phase)
    after, facts = mafia.advance(table.game)
    last_seq = await _write(session, table, facts, table.game, after)
    count = await rooms_repository.count_present(session, table.room.id)
    return room_view(table.room, count), Committed(table.room.id, last_seq)


async def close_overdue_phase(session: AsyncSession) -> Committed | None:
    """Close one phase whose deadline has passed (database clock), if any room has one.

    Rooms another worker is closing are skipped, and the row lock plus the status and
    deadline check make each deadline fire once, also when several workers poll.
    """
    room = await repository.lock_overdue_room(session)
    if room is None:
        return None
    table = await _load(session, room)
    after, facts = mafia.advance(table.game)
    last_seq = await _write(session, table, facts, table.game, after)
    return Committed(room.id, last_seq)


async def list_rounds(session: AsyncSession, room_id: uuid.UUID, actor: Actor) -> api.RoundList:
    """Return every round's votes and results, as far as the caller may see them."""
    room = await rooms_repository.get_room(session, room_id)
    if (
        room is None
        or (me := await rooms_repository.present_player(session, room_id, actor.player_id)) is None
    ):
        raise Unauthorized("This token's player is no longer in the room.")
    viewer = viewer_of(me)
    results = {(r.round, r.phase): r for r in await repository.phase_results(session, room.id)}
    history = await repository.vote_history(session, room.id)
    keys = set(results) | {(v.round, v.phase) for v in history}
    if room.status == "in_progress" and room.phase is not None:
        keys.add((room.round, room.phase))
    rounds: dict[int, list[api.PhaseRecord]] = {}
    for round_, phase in sorted(keys, key=lambda k: (k[0], PHASE_ORDER[k[1]])):
        result = results.get((round_, phase))
        tally = None
        investigations: list[api.Investigation] = []
        if result is not None:
            if result.tally is not None and (phase != "night" or may_see_night_tally(viewer, room.status)):
                tally = [api.TallyEntry.model_validate(t) for t in result.tally]
            investigations = [
                api.Investigation.model_validate(i)
                for i in result.details.get("investigations", [])
                if may_see_investigation(viewer, i["detective_id"], room.status)
            ]
        rounds.setdefault(round_, []).append(
            api.PhaseRecord(
                phase=api.Phase(phase),
                closed=result is not None,
                votes=visible_votes(
                    viewer, [v for v in history if (v.round, v.phase) == (round_, phase)], room.status
                ),
                tally=tally,
                eliminated_player_id=result.eliminated_player_id if result else None,
                investigations=investigations,
            )
        )
    return api.RoundList(rounds=[api.Round(round=r, phases=p) for r, p in sorted(rounds.items())])
