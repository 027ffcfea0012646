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
    "INSERT INTO stream_tickets (ticket_hash, player_id, room_id, expires_at)"
    " VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING expires_at"
)
# A player's expired tickets go when they ask for a new one (and with the player or room).
_PURGE = "DELETE FROM stream_tickets WHERE player_id = $1 AND expires_at <= now()"
_REDEEM = (
    "DELETE FROM stream_tickets t USING players p WHERE t.ticket_hash = $1 AND p.id = t.player_id"
    " RETURNING t.player_id, t.room_id, p.team, p.left_at IS NULL, t.expires_at > now()"
)


async def issue(conn: asyncpg.Connection, actor: Actor, seconds: float) -> api.StreamTicket:
    """Store a new ticket for `actor`, valid `seconds` from now; return it (the only time it
    is seen in clear)."""
    ticket = new_token()
    await conn.execute(_PURGE, actor.player_id)
    expires_at = await conn.fetchval(_ISSUE, hash_token(ticket), actor.player_id, actor.room_id, seconds)
    return api.StreamTicket(ticket=ticket, expires_at=expires_at)


async def redeem(db: Database, ticket: str, room_id: uuid.UUID) -> Actor:
    """Consume `ticket` and return the present player of `room_id` it was issued to, or refuse
    (401 when unknown, used, expired or its player gone; 403 for another room's)."""
    async with db.driver(transaction=False) as conn:
        row = await conn.fetchrow(_REDEEM, hash_token(ticket))
    if row is None or not row[3] or not row[4]:
        raise Unauthorized("The stream ticket is unknown, used or expired; ask for a new one.")
    player_id, player_room, team = row[0], row[1], row[2]
    if player_room != room_id:
        raise NotAMember("This ticket belongs to another room.")
    return Actor(player_id=player_id, room_id=player_room, team=team)
