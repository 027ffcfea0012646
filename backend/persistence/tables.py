"""The tables: rooms, players and each room's event log. PostgreSQL is the truth."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# Stable constraint names, so migrations autogenerate the same names everywhere.
SQLModel.metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

UNFINISHED = "status IN ('lobby', 'in_progress')"
ENDED = "status IN ('finished', 'closed')"


def _now_column(nullable: bool = False) -> Any:
    return Column(DateTime(timezone=True), nullable=nullable, server_default=func.now())


class RoomRow(SQLModel, table=True):
    """A room; its row is locked by every command on it, which serialises the room."""

    __tablename__ = "rooms"
    __table_args__ = (
        # Join codes are unique among rooms that are not finished; old codes come back.
        Index("uq_rooms_code_unfinished", "code", unique=True, postgresql_where=text(UNFINISHED)),
        Index("ix_rooms_listing", "status", "list_key"),
        # The scheduler's question, every fraction of a second: which running phases are overdue?
        Index("ix_rooms_deadline", "phase_ends_at", postgresql_where=text("status = 'in_progress'")),
        # The lifecycle sweep's questions, every few seconds: which lobbies and games have had
        # nobody connected for long enough, which ended rooms are past their retention?
        Index("ix_rooms_idle", "status", "idle_since", postgresql_where=text(UNFINISHED)),
        Index("ix_rooms_ended", "ended_at", postgresql_where=text(ENDED)),
    )

    id: uuid.UUID = Field(primary_key=True)
    # Monotonic listing order and the value of the listing cursor.
    list_key: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), nullable=False, unique=True)
    )
    code: str = Field(max_length=6)
    name: str
    ruleset: str
    status: str
    settings: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    host_player_id: uuid.UUID | None = None
    round: int = 0
    phase: str | None = None
    phase_ends_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    winner: str | None = None
    # The game's state as its ruleset stores it (Ruleset.dump); NULL in the lobby.
    game: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    # Which game of the room is played or was last played: 0 before the first, +1 per rematch.
    game_number: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # The seq of the newest event; the next event gets last_seq + 1 under the row lock.
    last_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    # The seq of the newest event that changed the room or its players (every event but chat
    # does): chat appends only while it is what chat read (see persistence.events.append_event).
    state_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    created_at: datetime | None = Field(default=None, sa_column=_now_column())
    # Since when no present player has been connected (no open stream anywhere); NULL while
    # someone is. A new room is idle from its creation. Drives the idle lobby and abandoned
    # game closes.
    idle_since: datetime | None = Field(default=None, sa_column=_now_column(nullable=True))
    # When the room became finished or closed: the retention purge counts from it.
    ended_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class PlayerRow(SQLModel, table=True):
    """A player of one room; `left_at` set means gone (left or kicked), token revoked."""

    __tablename__ = "players"
    __table_args__ = (
        Index(
            "uq_players_room_nickname_present",
            "room_id",
            "nickname_key",
            unique=True,
            postgresql_where=text("left_at IS NULL"),
        ),
        # Look-alikes (nicknames): the skeleton as written is unique too (see domain.nicknames).
        Index(
            "uq_players_room_skeleton_present",
            "room_id",
            "nickname_skeleton",
            unique=True,
            postgresql_where=text("left_at IS NULL"),
        ),
        Index(
            "uq_players_room_seat_present",
            "room_id",
            "seat",
            unique=True,
            postgresql_where=text("left_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(primary_key=True)
    room_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    # Shown as given, in NFKC form and trimmed (domain.nicknames.normalize_nickname).
    nickname: str
    # The TR39 skeleton of the case-folded nickname: unique among the present, so neither the
    # same name in other case nor a look-alike can join (domain.nicknames.nickname_keys).
    nickname_key: str
    # The skeleton of the nickname as written, case-folded: unique too (capitals that look alike).
    nickname_skeleton: str
    seat: int
    # SHA-256 of the bearer token; the token itself is never stored.
    token_hash: str = Field(unique=True, max_length=64)
    alive: bool = True
    connected: bool = False
    team: str | None = None
    role: str | None = None
    joined_at: datetime | None = Field(default=None, sa_column=_now_column())
    left_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    left_reason: str | None = None


@dataclass(slots=True)
class PlayerRecord:
    """A player row as a plain statement reads it (the game's command path): PlayerRow's
    fields without an ORM row's bookkeeping, which costs ~0.1 ms a row to set up."""

    id: uuid.UUID
    room_id: uuid.UUID
    nickname: str
    nickname_key: str
    nickname_skeleton: str
    seat: int
    token_hash: str
    alive: bool
    connected: bool
    team: str | None
    role: str | None
    joined_at: datetime | None
    left_at: datetime | None
    left_reason: str | None


# A player as the game and the views read it: an ORM row or a plain record.
PlayerData = PlayerRow | PlayerRecord


@dataclass(slots=True)
class RoomRecord:
    """A room row as a plain statement reads it (the game's command path), like PlayerRecord."""

    id: uuid.UUID
    list_key: int | None
    code: str
    name: str
    ruleset: str
    status: str
    settings: dict[str, Any]
    host_player_id: uuid.UUID | None
    round: int
    phase: str | None
    phase_ends_at: datetime | None
    winner: str | None
    game: dict[str, Any] | None
    last_seq: int
    state_seq: int
    created_at: datetime | None
    idle_since: datetime | None
    ended_at: datetime | None
    game_number: int


RoomData = RoomRow | RoomRecord


class EventRow(SQLModel, table=True):
    """One event of a room's log: seq 1, 2, 3, ... without gaps, and who may see it."""

    __tablename__ = "room_events"

    room_id: uuid.UUID = Field(sa_column=Column(ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True))
    type: str
    data: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    # 'room' (everyone in it), 'team' (audience = team name) or 'player' (audience = player id).
    visibility: str = "room"
    audience: str | None = None
    created_at: datetime | None = Field(default=None, sa_column=_now_column())


class StreamLeaseRow(SQLModel, table=True):
    """A worker holds at least one open stream of a player; refreshed while it lives.

    Presence is global across workers: a player is connected while any fresh lease exists.
    """

    __tablename__ = "stream_leases"

    worker_id: uuid.UUID = Field(primary_key=True)
    player_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("players.id", ondelete="CASCADE"), primary_key=True, index=True)
    )
    room_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    seen_at: datetime | None = Field(default=None, sa_column=_now_column())


class VoteRow(SQLModel, table=True):
    """One vote as cast: every change is a new row (the vote history); the newest counts."""

    __tablename__ = "votes"
    __table_args__ = (
        Index("ix_votes_room_game_round_phase", "room_id", "game", "round", "phase", "attempt"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    room_id: uuid.UUID = Field(sa_column=Column(ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False))
    # Which game of the room (RoomRow.game_number): each rematch starts at round 1 again.
    game: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    round: int
    phase: str
    # Which opening of the phase in its round (a phase may open again in one round); else 1.
    attempt: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    # What the vote does, in the ruleset's words (Ruleset.record).
    action: str
    voter_id: uuid.UUID = Field(
        # Indexed for the cascade when the retention purge deletes players.
        sa_column=Column(ForeignKey("players.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    target_player_id: uuid.UUID | None = None
    # A choice instead of a target: approve/reject, success/fail.
    choice: str | None = None
    # Who may see it, as its event (backend.games.projection): a mission choice is for nobody.
    visibility: str = Field(default="room", sa_column=Column(String, nullable=False, server_default="room"))
    audience: str | None = None
    # The seq of the event that announced it.
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    cast_at: datetime | None = Field(default=None, sa_column=_now_column())


class PhaseResultRow(SQLModel, table=True):
    """A closed phase's result, as the ruleset records it (Ruleset.record): a tally, who died, details."""

    __tablename__ = "phase_results"

    room_id: uuid.UUID = Field(sa_column=Column(ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True))
    game: int = Field(default=1, sa_column=Column(Integer, primary_key=True, server_default="1"))
    round: int = Field(primary_key=True)
    phase: str = Field(primary_key=True)
    attempt: int = Field(default=1, sa_column=Column(Integer, primary_key=True, server_default="1"))
    # The final count, as the ruleset counts it (e.g. [{"target_player_id": ..., "votes": n}, ...]).
    tally: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB))
    eliminated_player_id: uuid.UUID | None = None
    # Whatever else the ruleset keeps of the close (its private outcomes, its proposal, ...).
    details: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False, server_default="{}"))
    closed_at: datetime | None = Field(default=None, sa_column=_now_column())


class IdempotencyRow(SQLModel, table=True):
    """A command's first answer under an Idempotency-Key, stored in the command's transaction."""

    __tablename__ = "idempotency_keys"

    player_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("players.id", ondelete="CASCADE"), primary_key=True)
    )
    key: str = Field(primary_key=True, max_length=128)
    # SHA-256 of the request (method, path, body) the key was first used with.
    request_hash: str = Field(max_length=64)
    status_code: int
    body: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_now_column())


class StreamTicketRow(SQLModel, table=True):
    """A single-use ticket that opens one stream of a player or a spectator (exactly one of
    the two is set): stored only as a hash, deleted when used (whichever worker takes it),
    useless after `expires_at` (database clock)."""

    __tablename__ = "stream_tickets"
    __table_args__ = (CheckConstraint("num_nonnulls(player_id, spectator_id) = 1", name="one_holder"),)

    ticket_hash: str = Field(primary_key=True, max_length=64)
    player_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(ForeignKey("players.id", ondelete="CASCADE"), nullable=True, index=True),
    )
    spectator_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(ForeignKey("spectators.id", ondelete="CASCADE"), nullable=True, index=True),
    )
    room_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SpectatorRow(SQLModel, table=True):
    """Someone watching a room with a token of their own: sees what is public, never acts."""

    __tablename__ = "spectators"

    id: uuid.UUID = Field(primary_key=True)
    room_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    nickname: str | None = None
    # SHA-256 of the bearer token; the token itself is never stored.
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime | None = Field(default=None, sa_column=_now_column())
