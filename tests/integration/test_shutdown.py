"""SIGTERM with streams open and commands in flight: a clean end for everyone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.support import serve, sse_events, wait_for

PLAYERS = 10
SSE_PER_PLAYER = 2


async def new_room(http: httpx.AsyncClient, base: str, players: int) -> list[dict[str, Any]]:
    body = {"name": "Shutdown", "nickname": "P0", "ruleset": "mafia", "settings": {"max_players": players}}
    created = await http.post(f"{base}/v1/rooms", json=body)
    assert created.status_code == 201, created.text
    sessions = [created.json()]
    room_id = sessions[0]["room"]["id"]
    for i in range(1, players):
        joined = await http.post(f"{base}/v1/rooms/{room_id}/players", json={"nickname": f"P{i}"})
        assert joined.status_code == 201, joined.text
        sessions.append(joined.json())
    return sessions


async def test_sigterm_ends_streams_cleanly_and_answers_exactly_what_it_commits(
    database_url: str, tmp_path: Path
) -> None:
    """20 SSE and 10 WebSocket streams open, chat commands flowing over HTTP and over the
    sockets, then SIGTERM: every SSE response ends with its terminating chunk (the body reads
    to its end), every socket closes 1001 as the AsyncAPI file says, every command answered
    is in the log and no command left unanswered is, and the server logs no cut response."""
    log = tmp_path / "server.log"
    env = {"CHAT_PER_SECOND": "10000", "CHAT_BURST": "10000", "SHUTDOWN_DRAIN_SECONDS": "5"}
    answered: set[str] = set()
    sent: set[str] = set()
    with serve(database_url, log, env) as server:
        base = server.url
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as http:
            sessions = await new_room(http, base, PLAYERS)
            room_id = sessions[0]["room"]["id"]
            events_url = f"{base}/v1/rooms/{room_id}/events"
            ws_url = f"{base.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws"
            sse_opened = 0
            sse_ended: list[str] = []

            async def read_sse(session: dict[str, Any]) -> None:
                nonlocal sse_opened
                headers = {"Authorization": f"Bearer {session['token']}"}
                async with http.stream("GET", events_url, headers=headers) as response:
                    assert response.status_code == 200
                    parser = sse_events(response)
                    assert (await anext(parser)).event == "snapshot"
                    sse_opened += 1
                    async for _ in parser:  # to the end of the body: raises if it is cut
                        pass
                sse_ended.append(session["token"])

            sockets: list[ClientConnection] = []
            for session in sessions:
                ws = await ws_connect(
                    ws_url, additional_headers={"Authorization": f"Bearer {session['token']}"}
                )
                assert json.loads(await ws.recv())["type"] == "snapshot"
                sockets.append(ws)

            async def socket_commands(index: int, ws: ClientConnection) -> int:
                """Send chat commands without waiting for the answers; note each ack; return
                the close code."""

                async def send_all() -> None:
                    with contextlib.suppress(ConnectionClosed):
                        for n in range(100_000):
                            text = f"ws-{index}-{n}"
                            sent.add(text)
                            await ws.send(json.dumps({"type": "chat", "request_id": text, "text": text}))
                            await asyncio.sleep(0.005)

                sender = asyncio.create_task(send_all())
                try:
                    async for raw in ws:
                        message = json.loads(raw)
                        if message["type"] == "ack":
                            answered.add(message["request_id"])
                        assert message["type"] != "error", message
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sender
                assert ws.close_code is not None
                return ws.close_code

            async def http_commands(index: int) -> None:
                session = sessions[index % PLAYERS]
                headers = {"Authorization": f"Bearer {session['token']}"}
                for n in range(100_000):
                    text = f"http-{index}-{n}"
                    sent.add(text)
                    try:
                        response = await http.post(
                            f"{base}/v1/rooms/{room_id}/messages", json={"text": text}, headers=headers
                        )
                    except httpx.TransportError:
                        return  # the server is gone; this one was not answered
                    if response.status_code != 201:
                        return
                    answered.add(text)

            readers = [asyncio.create_task(read_sse(s)) for s in sessions for _ in range(SSE_PER_PLAYER)]
            await wait_for(lambda: sse_opened == PLAYERS * SSE_PER_PLAYER, within=30)
            socket_tasks = [asyncio.create_task(socket_commands(i, ws)) for i, ws in enumerate(sockets)]
            http_tasks = [asyncio.create_task(http_commands(i)) for i in range(8)]
            await wait_for(lambda: len(answered) >= 200, within=30)

            server.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.to_thread(server.process.wait), 20)

            await asyncio.wait_for(asyncio.gather(*readers), 5)  # every SSE body read to its end
            codes = await asyncio.wait_for(asyncio.gather(*socket_tasks), 5)
            await asyncio.wait_for(asyncio.gather(*http_tasks), 5)
            assert len(sse_ended) == PLAYERS * SSE_PER_PLAYER
            assert codes == [1001] * PLAYERS

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT data->>'text' AS text FROM room_events WHERE room_id = $1 AND type = 'chat.message'",
            uuid.UUID(room_id),
        )
    finally:
        await conn.close()
    committed = {row["text"] for row in rows}
    # Both kinds of command were answered, and some were still on their way at the end.
    assert {text.split("-")[0] for text in answered} == {"ws", "http"}
    assert answered <= committed, sorted(answered - committed)[:10]
    assert committed <= sent
    unanswered = sent - answered
    assert not (unanswered & committed), sorted(unanswered & committed)[:10]
    text = log.read_text()
    assert "ASGI callable returned without completing response" not in text, text
    assert "Traceback" not in text, text
