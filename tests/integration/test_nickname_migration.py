"""The look-alike migration on a database that already has players, up and down again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from alembic import command

from backend.core.database_url import with_database
from backend.core.runtime import alembic_config, asyncpg_connect_args, recreate_database
from backend.domain.nicknames import nickname_keys
from tests.conftest import TEST_DATABASE, postgres_server_url

BEFORE = "5d1e0c7a9b21"


async def _sql(url: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**asyncpg_connect_args(url))
    try:
        rows: list[asyncpg.Record] = await conn.fetch(statement, *args)
        return rows
    finally:
        await conn.close()


def test_existing_players_get_skeleton_keys_and_look_alikes_keep_their_seats() -> None:
    name = f"{TEST_DATABASE}_nickname_migration"
    url = recreate_database(postgres_server_url(), name)
    try:
        _migrate_with_players(url)
    finally:
        server = with_database(postgres_server_url(), "postgres")
        asyncio.run(_sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _migrate_with_players(url: str) -> None:
    command.upgrade(alembic_config(url), BEFORE)
    room = uuid.uuid4()
    asyncio.run(
        _sql(
            url,
            "INSERT INTO rooms (id, code, name, ruleset, status, settings, round)"
            " VALUES ($1, 'K7QXMB', 'r', 'mafia', 'lobby', '{}', 0)",
            room,
        )
    )
    # Under the old rule these two could share a room (their case-folded forms differ).
    players = [("Alice0", 1, None), ("\u0410lice0", 2, None), ("Bob", 3, None), ("alice0", 4, "left")]
    for nickname, seat, left in players:
        asyncio.run(
            _sql(
                url,
                "INSERT INTO players (id, room_id, nickname, nickname_key, seat, token_hash, alive,"
                " connected, left_at) VALUES ($1, $2, $3, $4, $5, $6, true, false,"
                " CASE WHEN $7::text IS NULL THEN NULL ELSE now() END)",
                uuid.uuid4(),
                room,
                nickname,
                nickname.casefold(),
                seat,
                uuid.uuid4().hex,
                left,
            )
        )

    command.upgrade(alembic_config(url), "head")
    rows = asyncio.run(
        _sql(
            url,
            "SELECT nickname, nickname_key, nickname_skeleton FROM players WHERE room_id = $1 ORDER BY seat",
            room,
        )
    )
    keys = {r["nickname"]: (r["nickname_key"], r["nickname_skeleton"]) for r in rows}
    alice = nickname_keys("Alice0")
    assert keys["Alice0"] == (alice.folded, alice.cased)
    assert keys["Bob"] == (nickname_keys("Bob").folded, nickname_keys("Bob").cased)
    # The later look-alike stays, with keys made unique; a newcomer still meets Alice0's.
    assert keys["\u0410lice0"][0].startswith(alice.folded + "\x1f")
    assert keys["alice0"] == (alice.folded, alice.cased)  # gone players need no unique key

    command.downgrade(alembic_config(url), BEFORE)
    rows = asyncio.run(_sql(url, "SELECT nickname, nickname_key FROM players WHERE room_id = $1", room))
    assert {r["nickname"]: r["nickname_key"] for r in rows} == {n: n.casefold() for n, _, _ in players}
