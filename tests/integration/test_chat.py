"""Chat's unlocked path: decide on the room as read (or as last seen), append only if unchanged.

What a user would notice if it were wrong: a message heard by the wrong audience (a night
whisper in the town square), a departed or dead player still talking, a lost message.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import prometheus_client
import pytest
from fastapi import FastAPI

from backend.core.db import Database
from backend.games.protocol import Visibility as Audience
from backend.persistence.events import (
    Append,
    GroupCommit,
    NewEvent,
    StoredEvent,
    append_event,
    append_if_unchanged,
)
from backend.rooms import repository, service
from tests.game_support import new_room, start
from tests.integration.test_game import by_role, log_of
from tests.integration.test_lobby import assert_problem
from tests.support import metric


async def say(client: httpx.AsyncClient, room_id: str, auth: dict[str, str], text: str) -> httpx.Response:
    """Send a chat message."""
    return await client.post(f"/v1/rooms/{room_id}/messages", headers=auth, json={"text": text})


async def test_a_speaker_seen_before_the_deal_is_decided_on_again_after_it(client: httpx.AsyncClient) -> None:
    """Each player chats in the lobby (the server now knows them as lobby speakers), then the
    game starts: at night a citizen is refused and a mafioso whispers to the mafia only."""
    room_id, seats = await new_room(client, 6)
    for seat in seats:
        assert (await say(client, room_id, seat.auth, "hello")).json()["channel"] == "room"
    await start(client, room_id, seats)
    citizen, mafioso = by_role(seats, "citizen")[0], by_role(seats, "mafia")[0]
    assert_problem(await say(client, room_id, citizen.auth, "psst"), 409, "chat_closed")
    whisper = await say(client, room_id, mafioso.auth, "the doctor?")
    assert whisper.status_code == 201
    assert whisper.json()["channel"] == "mafia"


async def test_a_departed_players_token_stops_talking_at_once(client: httpx.AsyncClient) -> None:
    """A player who chatted and then left, or was kicked, is refused on their next message."""
    room_id, seats = await new_room(client, 4)
    leaver, kicked = seats[1], seats[2]
    for seat in (leaver, kicked):
        assert (await say(client, room_id, seat.auth, "hi")).status_code == 201
    assert (
        await client.delete(f"/v1/rooms/{room_id}/players/{leaver.id}", headers=leaver.auth)
    ).status_code == 204
    assert (
        await client.delete(f"/v1/rooms/{room_id}/players/{kicked.id}", headers=seats[0].auth)
    ).status_code == 204
    for seat in (leaver, kicked):
        assert_problem(await say(client, room_id, seat.auth, "still here?"), 401, "unauthorized")


async def test_an_append_decided_on_an_older_state_writes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The append itself refuses a state it was not decided on: no event, no seq used."""
    room_id, seats = await new_room(client, 4)
    db: Database = app.state.db
    async with db.driver(transaction=False) as conn:
        before = await repository.speaker_by_id(conn, uuid.UUID(seats[1].id))
    assert before is not None
    renamed = await client.patch(f"/v1/rooms/{room_id}", headers=seats[0].auth, json={"name": "Renamed"})
    assert renamed.status_code == 200
    log = await log_of(app, room_id)
    event = NewEvent("chat.message", {"player_id": seats[1].id, "text": "late", "channel": "room"})
    async with db.driver(transaction=False) as conn:
        assert await append_event(conn, uuid.UUID(room_id), event, before.state_seq) is None
        now = await repository.speaker_by_id(conn, uuid.UUID(seats[1].id))
        assert now is not None
        assert now.state_seq == log[-1]["seq"] > before.state_seq
        stored = await append_event(conn, uuid.UUID(room_id), event, now.state_seq)
    assert stored is not None
    assert stored.seq == log[-1]["seq"] + 1
    assert [e["seq"] for e in await log_of(app, room_id)] == list(range(1, stored.seq + 1))


@pytest.mark.parametrize("attempts", [0, service.CHAT_ATTEMPTS], ids=["locked", "unlocked-first"])
async def test_chats_racing_phase_changes_are_heard_by_the_phase_they_land_in(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch, attempts: int
) -> None:
    """Mafiosi chat as fast as they can while the host moves the game through its phases.
    In the log, every message's channel matches the phase it landed in (mafia at night,
    the room by day), none is lost, the seqs have no gap. With no unlocked attempts at all
    (`locked`) every message takes the room's lock: the fallback is exercised too."""
    monkeypatch.setattr(service, "CHAT_ATTEMPTS", attempts)
    room_id, seats = await new_room(client, 8)
    await start(client, room_id, seats)
    mafiosi = by_role(seats, "mafia")
    host = seats[0]
    accepted: list[int] = []
    stop = asyncio.Event()

    async def chatter(auth: dict[str, str]) -> None:
        i = 0
        while not stop.is_set():
            answer = await say(client, room_id, auth, f"m{i}")
            i += 1
            if answer.status_code == 201:
                accepted.append(answer.json()["seq"])
            else:  # dead, or the game ended: refused, never half-written
                assert answer.status_code in (403, 409), answer.text

    async def mover() -> None:
        for _ in range(9):
            await asyncio.sleep(0.03)
            moved = await client.post(f"/v1/rooms/{room_id}/advance", headers=host.auth)
            if moved.status_code != 200:
                break
        stop.set()

    await asyncio.gather(mover(), *(chatter(m.auth) for m in mafiosi))
    log = await log_of(app, room_id)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    chats = {e["seq"]: e for e in log if e["type"] == "chat.message"}
    assert sorted(accepted) == sorted(chats), "an accepted message is missing, or one appeared unasked"
    phases = [e for e in log if e["type"] == "phase.started"]
    assert len(phases) >= 3, "the game did not move: the race was not run"
    phase_of: dict[int, Any] = {}
    for seq in chats:
        current = [p for p in phases if p["seq"] < seq]
        phase_of[seq] = current[-1]["data"]["phase"] if current else None
    for seq, event in chats.items():
        night = phase_of[seq] == "night"
        assert event["data"]["channel"] == ("mafia" if night else "room"), (seq, phase_of[seq], event)
        assert event["visibility"] == (Audience.team.value if night else Audience.room.value)
    assert {phase_of[s] for s in chats} >= {"night", "day"}, "chats did not land in both kinds of phase"


async def test_one_statement_appends_for_several_rooms_in_order_and_skips_a_stale_decision(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The group commit's statement: each room's events get the next seqs in the order given,
    and an append decided on an older state of its room writes nothing (the others still do)."""
    (first, seats_a), (second, seats_b) = await new_room(client, 4), await new_room(client, 4)
    db: Database = app.state.db
    async with db.driver(transaction=False) as conn:
        a = await repository.speaker_by_id(conn, uuid.UUID(seats_a[1].id))
        b = await repository.speaker_by_id(conn, uuid.UUID(seats_b[1].id))
    assert a is not None
    assert b is not None

    def chat(seat_id: str, text: str) -> NewEvent:
        return NewEvent("chat.message", {"player_id": seat_id, "text": text, "channel": "room"})

    appends = [
        Append(a.room_id, chat(seats_a[1].id, "a1"), a.state_seq),
        Append(b.room_id, chat(seats_b[1].id, "b1"), b.state_seq),
        Append(a.room_id, chat(seats_a[1].id, "stale"), a.state_seq - 1),
        Append(a.room_id, chat(seats_a[1].id, "a2"), a.state_seq),
    ]
    async with db.driver(transaction=False) as conn:
        stored = await append_if_unchanged(conn, appends)
    assert stored[2] is None
    assert [(event.seq, event.data["text"]) for event in stored if event] == [
        (a.state_seq + 1, "a1"),
        (b.state_seq + 1, "b1"),
        (a.state_seq + 2, "a2"),
    ]
    log = await log_of(app, first)
    assert [e["seq"] for e in log] == list(range(1, a.state_seq + 3))
    assert [e["data"]["text"] for e in log[-2:]] == ["a1", "a2"]
    assert [e["data"]["text"] for e in (await log_of(app, second))[-1:]] == ["b1"]


async def test_chats_sent_at_once_share_commits_and_each_lands_once_with_its_own_seq(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Many players of several rooms chat at the same moment: every message is acknowledged
    with the seq it has in its room's log, none is lost or doubled, the seqs have no gap, and
    they took fewer commits than messages (the busier, the fewer)."""
    rooms = [await new_room(client, 6) for _ in range(4)]
    for room_id, seats in rooms:  # each speaker is known: every chat goes straight to its append
        for seat in seats:
            assert (await say(client, room_id, seat.auth, "hi")).status_code == 201

    def counted() -> tuple[float, float]:
        page = prometheus_client.generate_latest().decode()
        return metric(page, "roundtable_chat_commits_total"), metric(
            page, "roundtable_chat_messages_committed_total"
        )

    commits, messages = counted()
    sent = [
        (room_id, seat, f"{room_id[:4]}-{seat.id[:4]}-{n}")
        for room_id, seats in rooms
        for seat in seats
        for n in range(3)
    ]
    answers = await asyncio.gather(*(say(client, room_id, seat.auth, text) for room_id, seat, text in sent))
    assert [answer.status_code for answer in answers] == [201] * len(sent)
    commits_after, messages_after = counted()
    assert messages_after - messages == len(sent)
    assert commits_after - commits < len(sent)
    for room_id, _ in rooms:
        log = await log_of(app, room_id)
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
        said = {e["seq"]: e["data"]["text"] for e in log if e["type"] == "chat.message"}
        for (room, _, text), answer in zip(sent, answers, strict=True):
            if room == room_id:
                assert said.pop(answer.json()["seq"]) == text
        assert sorted(said.values()) == ["hi"] * 6  # nothing else landed


async def test_text_the_database_cannot_store_is_refused_and_costs_nobody_else_their_message(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A lone surrogate is valid JSON but not Unicode: however it arrives, its sender gets a
    clear answer and never a 500, and the messages committed in the same group still land."""
    room_id, seats = await new_room(client, 6)
    for seat in seats:
        assert (await say(client, room_id, seat.auth, "hi")).status_code == 201
    bad = b'{"text": "broken \\ud800 text"}'
    refused = await client.post(
        f"/v1/rooms/{room_id}/messages",
        headers={**seats[0].auth, "Content-Type": "application/json"},
        content=bad,
    )
    assert_problem(refused, 422, "validation_failed")
    # Past the edge (a bug, or a driver that lets it through): the group still commits the rest.
    appends: GroupCommit = app.state.realtime.appends
    async with app.state.db.driver(transaction=False) as conn:
        speaker = await repository.speaker_by_id(conn, uuid.UUID(seats[1].id))
    assert speaker is not None

    def chat(text: str) -> NewEvent:
        return NewEvent("chat.message", {"player_id": seats[1].id, "text": text, "channel": "room"})

    results = await asyncio.gather(
        *(
            appends.append(speaker.room_id, chat(text), speaker.state_seq)
            for text in ("one", "\ud800", "two")
        ),
        return_exceptions=True,
    )
    assert isinstance(results[1], asyncpg.DataError)
    stored = [r for r in results if isinstance(r, StoredEvent)]
    assert [event.data["text"] for event in stored] == ["one", "two"]
    log = await log_of(app, room_id)
    assert [e["data"]["text"] for e in log[-2:]] == ["one", "two"]
