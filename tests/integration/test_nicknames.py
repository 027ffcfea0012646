"""Look-alike and invisible nicknames, over HTTP and against the database's own constraints."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from backend.core.db import Database
from backend.domain.nicknames import nickname_keys
from tests.conftest import bearer, create_room
from tests.integration.test_lobby import assert_problem, join, present_players, room_events

# Observed on the landed code: each accepted next to `Alice0`.
REFUSED_NEXT_TO_ALICE0 = [
    ("Alice0\u200b", 422, "nickname_invalid_characters"),  # a zero width space after it
    ("\u0410lice0", 409, "nickname_confusable"),  # a Cyrillic capital A
    ("\uff21lice0", 409, "nickname_taken"),  # a fullwidth A: NFKC makes it Alice0 itself
    ("Alice0\u00ad", 422, "nickname_invalid_characters"),  # a soft hyphen after it
    ("\u200b", 422, "nickname_invalid_characters"),  # nothing but a zero width space
    ("\ufeff", 422, "nickname_invalid_characters"),  # nothing but a byte order mark
    ("\u3164", 422, "nickname_invalid_characters"),  # nothing but a Hangul filler
    ("AIice0", 409, "nickname_confusable"),  # a capital I for the l
]


@pytest.mark.parametrize(("nickname", "status", "code"), REFUSED_NEXT_TO_ALICE0)
async def test_each_observed_nickname_is_refused_with_its_code(
    client: httpx.AsyncClient, app: FastAPI, nickname: str, status: int, code: str
) -> None:
    host = await create_room(client, nickname="Alice0")
    room_id = host["room"]["id"]
    before = await room_events(app, room_id)
    problem = assert_problem(await join(client, room_id, nickname), status, code)
    assert "nickname" in problem["detail"]
    assert await room_events(app, room_id) == before
    assert [p["nickname"] for p in await present_players(app, room_id)] == ["Alice0"]


@pytest.mark.parametrize("nickname", ["\u200b", "\ufeff", "Host\u200b", "\u3164", "Ho\u00adst"])
async def test_a_room_is_not_created_with_an_invisible_nickname(
    client: httpx.AsyncClient, app: FastAPI, nickname: str
) -> None:
    name = f"invisible-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "nickname": nickname, "ruleset": "mafia"}
    assert_problem(await client.post("/v1/rooms", json=body), 422, "nickname_invalid_characters")
    db: Database = app.state.db
    async with db.engine.connect() as conn:
        rooms = (await conn.execute(text("SELECT count(*) FROM rooms WHERE name = :n"), {"n": name})).scalar()
    assert rooms == 0


async def test_the_stored_and_shown_nickname_is_the_nfkc_form(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    host = await create_room(client, nickname="\uff21lice\uff18")  # fullwidth A and 8
    assert host["player"]["nickname"] == "Alice8"
    guest = (await join(client, host["room"]["id"], " \uff22\uff4f\uff42 ")).json()
    assert guest["player"]["nickname"] == "Bob"
    state = (await client.get(f"/v1/rooms/{host['room']['id']}/state", headers=bearer(guest["token"]))).json()
    assert [p["nickname"] for p in state["players"]] == ["Alice8", "Bob"]
    assert [p["nickname"] for p in await present_players(app, host["room"]["id"])] == ["Alice8", "Bob"]
    joined = [e["data"]["player"]["nickname"] for e in await room_events(app, host["room"]["id"])]
    assert joined == ["Alice8", "Bob"]


async def test_a_nickname_too_long_once_normalised_is_refused(client: httpx.AsyncClient) -> None:
    host = await create_room(client)
    # 24 characters as sent; NFKC reorders each pair's marks into 3 characters, 36 in all.
    problem = assert_problem(
        await join(client, host["room"]["id"], "\u01d8\u0328" * 12), 422, "validation_failed"
    )
    assert problem["errors"][0]["loc"] == ["body", "nickname"]


@pytest.mark.parametrize(
    ("nickname", "named"),
    [
        ("\ufdfa", "U+FDFA ARABIC LIGATURE SALLALLAHOU ALAYHE WASALLAM, which normalises (NFKC) to 18"),
        ("Bob\u0085", "U+0085, a control character"),
        ("Bob\U000e0041", "U+E0041 TAG LATIN CAPITAL LETTER A, an invisible format character"),
    ],
)
async def test_a_nickname_the_spec_pattern_refuses_is_refused_naming_its_character(
    client: httpx.AsyncClient, nickname: str, named: str
) -> None:
    # The schema's pattern refuses these before the rule runs; the answer is still the rule's.
    body = {"name": "Pattern", "nickname": nickname, "ruleset": "mafia"}
    problem = assert_problem(await client.post("/v1/rooms", json=body), 422, "nickname_invalid_characters")
    assert named in problem["detail"]
    assert len(problem["detail"]) < 200


async def test_other_mistakes_beside_a_refused_nickname_are_all_named_briefly(
    client: httpx.AsyncClient,
) -> None:
    body = {"name": "", "nickname": "Bob\u200b", "ruleset": "mafia"}
    problem = assert_problem(await client.post("/v1/rooms", json=body), 422, "validation_failed")
    messages = {tuple(e["loc"]): e["message"] for e in problem["errors"]}
    assert "U+200B ZERO WIDTH SPACE" in messages[("body", "nickname")]
    assert ("body", "name") in messages
    assert max(len(m) for m in messages.values()) < 200


async def test_concurrent_look_alikes_get_one_seat(client: httpx.AsyncClient, app: FastAPI) -> None:
    host = await create_room(client, nickname="Host")
    room_id = host["room"]["id"]
    # Pairwise alike (look-alikes are not transitive: AIice looks like Alice, not like ALICE).
    alikes = ["Alice", "\u0410lice", "ALICE", "\uff21lice", "alice", "\u0430lice", "A\u217cice"]
    answers = await asyncio.gather(*(join(client, room_id, n) for n in alikes))
    assert sorted(a.status_code for a in answers) == [201] + [409] * (len(alikes) - 1)
    assert {a.json()["code"] for a in answers if a.status_code == 409} <= {
        "nickname_taken",
        "nickname_confusable",
    }
    assert len(await present_players(app, room_id)) == 2


async def _insert_player(app: FastAPI, room_id: str, nickname: str, seat: int) -> None:
    """Insert a present player as the service would, past every check but the database's."""
    keys = nickname_keys(nickname)
    db: Database = app.state.db
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO players (id, room_id, nickname, nickname_key, nickname_skeleton, seat,"
                " token_hash, alive, connected)"
                " VALUES (:id, :room, :nickname, :key, :skeleton, :seat, :hash, true, false)"
            ),
            {
                "id": uuid.uuid4(),
                "room": room_id,
                "nickname": nickname,
                "key": keys.folded,
                "skeleton": keys.cased,
                "seat": seat,
                "hash": uuid.uuid4().hex,
            },
        )


@pytest.mark.parametrize(
    ("first", "second", "index"),
    [
        ("BOB", "\u0412\u041e\u0412", "uq_players_room_skeleton_present"),  # alike as written only
        ("Alice0", "\u0410lice0", "uq_players_room_(nickname|skeleton)_present"),  # alike both ways
    ],
)
async def test_the_database_refuses_a_look_alike_past_the_checks(
    client: httpx.AsyncClient, app: FastAPI, first: str, second: str, index: str
) -> None:
    host: dict[str, Any] = await create_room(client, nickname=first)
    with pytest.raises(IntegrityError, match=index):
        await _insert_player(app, host["room"]["id"], second, seat=2)
    await _insert_player(app, host["room"]["id"], "Carol", seat=2)
