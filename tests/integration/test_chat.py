"""Chat's unlocked path: decide on the room as read (or as last seen), append only if unchanged.

What a user would notice if it were wrong: a message heard by the wrong audience (a night
whisper in the town square), a departed or dead player still talking, a lost message.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from backend.core.db import Database
from backend.domain.visibility import Audience
from backend.persistence.events import NewEvent, append_event
from backend.rooms import repository, service
from tests.game_support import new_room, start
from tests.integration.test_game import by_role, log_of
from tests.integration.test_lobby import assert_problem


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
    limiter = app.state.realtime.chat_limiter
    monkeypatch.setattr(limiter, "rate", 1e6)
    monkeypatch.setattr(limiter, "burst", 10**6)
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
