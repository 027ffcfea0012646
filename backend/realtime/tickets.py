"""Stream tickets: a short-lived, single-use stand-in for the bearer token in a stream's URL.

A browser's EventSource (and WebSocket) cannot send an Authorization header, so the token
used to travel in the URL, where proxies, logs and the browser's history keep it. Instead a
client asks for a ticket with its token (`POST /v1/rooms/{room_id}/stream-tickets`) and opens
the stream with `?ticket=`. A ticket is stored as a hash in PostgreSQL and consumed with
DELETE … RETURNING, so it opens one stream, once, whichever worker serves it, and only until
its expiry (`STREAM_TICKET_SECONDS`, the database clock).
"""

from __future__ import annotations

import uuid

import asyncpg

from backend.contract import api
from backend.core.db import Database
from backend.core.problems import NotAMember, Unauthorized
from backend.core.security import hash_token, new_token
from backend.rooms.service import Actor

_ISSUE = (
    "INSERT INTO stream_tickets (ticket_hash, player_id, spectator_id, room_id, expires_at)"
    " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING expires_at"
)
# A holder's expired tickets go when they ask for a new one (and with the holder or room).
_PURGE_PLAYER = "DELETE FROM stream_tickets WHERE player_id = $1 AND expires_at <= now()"
_PURGE_SPECTATOR = "DELETE FROM stream_tickets WHERE spectator_id = $1 AND expires_at <= now()"
# A player's ticket counts while they are present; a spectator's while the spectator is.
_REDEEM = (
    "WITH used AS (DELETE FROM stream_tickets WHERE ticket_hash = $1"
    " RETURNING player_id, spectator_id, room_id, expires_at)"
    " SELECT coalesce(u.player_id, u.spectator_id), u.room_id, p.team,"
    " (p.id IS NOT NULL AND p.left_at IS NULL) OR s.id IS NOT NULL,"
    " u.expires_at > now(), u.spectator_id IS NOT NULL"
    " FROM used u LEFT JOIN players p ON p.id = u.player_id"
    " LEFT JOIN spectators s ON s.id = u.spectator_id"
)


async def issue(conn: asyncpg.Connection, actor: Actor, seconds: float) -> api.StreamTicket:
    """Store a new ticket for `actor` (a player or a spectator), valid `seconds` from now;
    return it (the only time it is seen in clear)."""
    ticket = new_token()
    player_id, spectator_id = (None, actor.player_id) if actor.spectator else (actor.player_id, None)
    await conn.execute(_PURGE_SPECTATOR if actor.spectator else _PURGE_PLAYER, actor.player_id)
    expires_at = await conn.fetchval(
        _ISSUE, hash_token(ticket), player_id, spectator_id, actor.room_id, seconds
    )
    return api.StreamTicket(ticket=ticket, expires_at=expires_at)


async def redeem(db: Database, ticket: str, room_id: uuid.UUID) -> Actor:
    """Consume `ticket` and return the present player (or the spectator) of `room_id` it was
    issued to, or refuse (401 when unknown, used, expired or its holder gone; 403 for
    another room's)."""
    async with db.driver(transaction=False) as conn:
        row = await conn.fetchrow(_REDEEM, hash_token(ticket))
    if row is None or not row[3] or not row[4]:
        raise Unauthorized("The stream ticket is unknown, used or expired; ask for a new one.")
    holder_id, holder_room, team, spectator = row[0], row[1], row[2], row[5]
    if holder_room != room_id:
        raise NotAMember("This ticket belongs to another room.")
    return Actor(player_id=holder_id, room_id=holder_room, team=team, spectator=spectator)
