"""PostgreSQL restarted (immediate, fast) and frozen under a server busy with reads, commands,
game votes, WebSocket commands and SSE streams: every request is answered (a success or a 503 with
Retry-After, never a 500), nothing refused is written, no stream loses an event, and the
server's log has no traceback."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.load import TIMEOUT, Load, Night, SseClient, committed, room_last_seq
from tests.faults.postgres import PostgresServer
from tests.game_support import new_room, start
from tests.support import Server, wait_for

KINDS = ("state", "chat", "create", "join", "vote", "socket", "stream")


def assert_clean_log(log: Path) -> None:
    text = log.read_text()
    assert "Traceback" not in text, text
    assert not re.search(r'HTTP/1\.1" 5(?!03)\d\d ', text), text


async def night_game(base: str) -> Night:
    """A game of five at its first night, which stays open: the doctor never acts, and the
    night lasts an hour. The mafia player votes for the town, one after another."""
    async with httpx.AsyncClient(base_url=base) as client:
        room_id, seats = await new_room(client, 5, night_seconds=3600, day_seconds=3600, vote_seconds=3600)
        await start(client, room_id, seats)
    [mafia] = [seat for seat in seats if seat.role == "mafia"]
    return Night(room_id, mafia.token, [seat.id for seat in seats if seat.role != "mafia"])


@asynccontextmanager
async def busy_room(http: httpx.AsyncClient, base: str) -> AsyncIterator[Load]:
    """A room with players chatting over HTTP and WebSocket and reading SSE streams (two open
    throughout, two reconnecting every 0.3 s), clients polling, creating and joining, and a
    game where a player keeps changing their vote."""
    body = {"name": "Faults", "nickname": "Host", "ruleset": "mafia", "settings": {"max_players": 20}}
    host = (await http.post(f"{base}/v1/rooms", json=body)).json()
    room_id = host["room"]["id"]
    tokens = {}
    for name in ("Chatter A", "Chatter B", "Socket A", "Socket B", "Reader A", "Reader B", "Reader C"):
        joined = await http.post(f"{base}/v1/rooms/{room_id}/players", json={"nickname": name})
        assert joined.status_code == 201, joined.text
        tokens[name] = joined.json()["token"]
    sse = [
        SseClient("steady A", tokens["Reader A"], None),
        SseClient("steady B", tokens["Reader B"], None),
        SseClient("resuming A", tokens["Reader C"], 0.3),
        SseClient("resuming B", host["token"], 0.3),
    ]
    load = Load(
        base,
        room_id,
        host["token"],
        chat_tokens=[tokens["Chatter A"], tokens["Chatter B"]],
        socket_tokens=[tokens["Socket A"], tokens["Socket B"]],
        sse=sse,
        night=await night_game(base),
    )
    load.start(http)
    try:
        yield load
    finally:
        await load.close_streams()


async def everything_works(load: Load) -> None:
    """Wait until every kind of request succeeded again, and every resuming stream opened
    again (recovery without a server restart).

    Waiting for the resumes here, while the commands still run, is what makes them certain: a
    resuming client leaves at its first event past its deadline, and a client whose first open
    met the fault could otherwise see the rest of the test pass within one deadline.
    """
    before = {kind: load.successes(kind) for kind in KINDS}
    opened = {client.name: client.opened for client in load.sse if client.resume_every}

    def recovered() -> bool:
        streams = all(c.opened > opened[c.name] for c in load.sse if c.resume_every)
        return streams and all(load.successes(kind) > before[kind] for kind in KINDS)

    try:
        await wait_for(recovered, within=30)
    except AssertionError:
        stuck = [kind for kind in KINDS if load.successes(kind) == before[kind]]
        stuck += [c.name for c in load.sse if c.resume_every and c.opened == opened[c.name]]
        raise AssertionError(f"no success since: {stuck}; {load.statuses}; {load.refused[:5]}") from None


async def finish(load: Load, http: httpx.AsyncClient, database_url: str) -> int:
    """Stop the commands, send a last message, and wait until every stream has it; return its seq."""
    await load.stop()
    headers = {"Authorization": f"Bearer {load.host_token}"}
    url = f"{load.base}/v1/rooms/{load.room_id}/messages"
    while (
        answer := await http.post(url, json={"text": "END"}, headers=headers, timeout=TIMEOUT)
    ).status_code != 201:
        assert answer.status_code == 503, answer.text
        await asyncio.sleep(0.1)
    end: int = answer.json()["seq"]
    assert await room_last_seq(database_url, load.room_id) >= end
    try:
        await wait_for(lambda: all((client.last or 0) >= end for client in load.sse), within=20)
    except AssertionError:
        behind = {c.name: (c.last, c.opened) for c in load.sse if (c.last or 0) < end}
        raise AssertionError(f"streams short of {end}: {behind}; {load.refused[:5]}") from None
    await load.close_streams()
    return end


def assert_no_lost_event(load: Load, end: int) -> None:
    """Each stream got every event of the room after its snapshot up to the last message (and
    any after it: players leaving), once each, in order (all of a lobby's events are public):
    nothing committed before, during or after the fault is missing, whatever the reconnects."""
    for client in load.sse:
        assert client.snapshot_seq is not None, client.name
        assert client.seqs, client.name
        assert client.seqs[-1] >= end, client.name
        assert client.seqs == list(range(client.snapshot_seq + 1, client.seqs[-1] + 1)), client.name
    resumes = {client.name: client.opened - 1 for client in load.sse if client.resume_every}
    assert all(resumes.values()), resumes


@pytest.mark.parametrize("mode", ["immediate", "fast"])
async def test_postgres_restarts_are_503s_with_retry_after_never_500s_and_streams_lose_nothing(
    mode: str, server: Server, own_postgres: PostgresServer, own_database_url: str
) -> None:
    async with httpx.AsyncClient() as http, busy_room(http, server.url) as load:
        for _ in range(2):
            await everything_works(load)
            await asyncio.to_thread(own_postgres.restart, mode)
        await everything_works(load)
        end = await finish(load, http, own_database_url)

    assert load.refused == [], load.refused  # no 500, no other problem, no request unanswered
    assert load.unavailable() > 0, "no request met the restart: the test proved nothing"
    assert_no_lost_event(load, end)
    written = await committed(own_database_url)
    lost = [sent for sent in load.sent if sent.outcome == "ok" and sent.key not in written[sent.kind]]
    assert lost == [], "acknowledged and not in the database"
    assert_clean_log(server.log)


def freeze(postgres: PostgresServer, seconds: float) -> None:
    with postgres.frozen():
        time.sleep(seconds)  # the fault itself: PostgreSQL and its backends stopped for this long


async def test_a_frozen_postgres_answers_late_or_503_and_writes_exactly_what_it_acknowledged(
    server: Server, own_postgres: PostgresServer, own_database_url: str
) -> None:
    async with httpx.AsyncClient() as http, busy_room(http, server.url) as load:
        await everything_works(load)
        await asyncio.to_thread(freeze, own_postgres, 5)
        await everything_works(load)
        end = await finish(load, http, own_database_url)

    assert load.refused == [], load.refused
    felt: list[Any] = [s for s in load.sent if s.outcome == "unavailable" or s.seconds > 3]
    assert felt, "no command met the freeze: the test proved nothing"
    assert_no_lost_event(load, end)
    written = await committed(own_database_url)
    # Answered: in the database. Refused with a 503 (or a socket's error): not in it.
    wrong = [s for s in load.sent if (s.key in written[s.kind]) != (s.outcome == "ok")]
    assert wrong == [], wrong
    assert_clean_log(server.log)
