"""SSE and WebSocket streams against a real server process: order, resume, visibility, closing."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from backend.core.config import Settings
from backend.core.db import Database, create_engine
from backend.games.projection import Viewer, may_see
from backend.games.protocol import Visibility as Audience
from backend.persistence.events import NewEvent, read_events
from tests.support import (
    END,
    Collector,
    append_to_log,
    check_envelope,
    metric,
    serve,
    sse_events,
    sse_stream,
    wait_for,
)


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One server for these tests, with quick catch-up and generous chat and stream limits
    (some tests open many streams of one player)."""
    log = tmp_path_factory.mktemp("streams") / "server.log"
    env = {"CHAT_PER_SECOND": "10000", "CHAT_BURST": "10000", "CATCHUP_SECONDS": "0.2"}
    env["MAX_STREAMS_PER_PLAYER"] = "1000"
    with serve(database_url, log, {**env, "PRESENCE_GRACE_SECONDS": "0.5"}) as s:
        yield s


async def new_room(http: httpx.AsyncClient, base: str, *nicknames: str) -> list[dict[str, Any]]:
    """Create a room with a host and more players; return each one's session."""
    host = (
        await http.post(f"{base}/v1/rooms", json={"name": "Streams", "nickname": "Host", "ruleset": "mafia"})
    ).json()
    sessions = [host]
    for name in nicknames:
        joined = await http.post(f"{base}/v1/rooms/{host['room']['id']}/players", json={"nickname": name})
        assert joined.status_code == 201
        sessions.append(joined.json())
    return sessions


async def chat(http: httpx.AsyncClient, base: str, session: dict[str, Any], text: str) -> int:
    """Send a chat message; return its seq."""
    response = await http.post(
        f"{base}/v1/rooms/{session['room']['id']}/messages",
        json={"text": text},
        headers={"Authorization": f"Bearer {session['token']}"},
    )
    assert response.status_code == 201, response.text
    seq: int = response.json()["seq"]
    return seq


def room_socket(base: str, session: dict[str, Any]) -> Any:
    """Connect to the room's WebSocket as `session`'s player (Authorization header)."""
    url = f"{base.replace('http://', 'ws://')}/v1/rooms/{session['room']['id']}/ws"
    return ws_connect(url, additional_headers={"Authorization": f"Bearer {session['token']}"})


async def visible_seqs(database_url: str, room_id: str, player_id: str, team: str | None = None) -> list[int]:
    """Every seq of the room the player may see, read from the log."""
    db = Database(create_engine(database_url, Settings()))
    try:
        async with db.driver(transaction=False) as conn:
            stored = await read_events(conn, uuid.UUID(room_id), 0, 100_000)
    finally:
        await db.dispose()
    viewer = Viewer(player_id=player_id, team=team)
    return [e.seq for e in stored if may_see(viewer, e.visibility, e.audience)]


async def test_sse_opens_with_a_snapshot_then_live_events_in_order(server: Any) -> None:
    base = server.url
    async with httpx.AsyncClient() as http:
        host, guest = await new_room(http, base, "Guest")
        room_id = host["room"]["id"]
        url = f"{base}/v1/rooms/{room_id}/events"
        received: list[dict[str, Any]] = []
        async with sse_stream(http, url, guest["token"]) as response:
            stream = sse_events(response)
            first = await anext(stream)
            assert first.event == "snapshot"
            snapshot = check_envelope(first)
            assert snapshot["data"]["me"]["id"] == guest["player"]["id"]
            assert first.id == str(snapshot["data"]["last_seq"])
            seq = await chat(http, base, host, "hello")
            async for event in stream:
                received.append(check_envelope(event))
                if event.data.get("seq") == seq:
                    break
        chats = [e for e in received if e["type"] == "chat.message"]
        assert chats[-1]["data"] == {"player_id": host["player"]["id"], "text": "hello", "channel": "room"}
        seqs = [e["seq"] for e in received]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        assert seqs[0] == snapshot["data"]["last_seq"] + 1


async def test_resume_delivers_every_event_exactly_once_across_random_disconnects(
    server: Any, database_url: str
) -> None:
    """Over 500+ events, SSE (Last-Event-ID and ?after) and WS (?after) clients drop and resume at random."""
    base = server.url
    rng = random.Random(7)
    async with httpx.AsyncClient(timeout=30) as http:
        sessions = await new_room(http, base, "Sse", "Sse2", "Ws")
        host, sse_a, sse_b, ws_player = sessions
        room_id = host["room"]["id"]
        url = f"{base}/v1/rooms/{room_id}/events"
        total = 520

        async def produce() -> None:
            for i in range(total - 1):
                await chat(http, base, sessions[i % 4], f"message {i}")
                if i % 50 == 0:
                    await asyncio.sleep(0.01)
            await chat(http, base, host, END)

        async def sse_consumer(session: dict[str, Any], header_resume: bool) -> Collector:
            got = Collector()
            async with httpx.AsyncClient(timeout=30) as own:
                while not got.finished:
                    after = got.last if got.last else None
                    budget = rng.randint(5, 80)
                    async with sse_stream(own, url, session["token"], after, header_resume) as response:
                        async for event in sse_events(response):
                            got.add(check_envelope(event))
                            budget -= 1
                            if budget == 0 or got.finished:
                                break
            return got

        async def ws_consumer(session: dict[str, Any]) -> Collector:
            got = Collector()
            ws_base = base.replace("http://", "ws://")
            headers = {"Authorization": f"Bearer {session['token']}"}
            while not got.finished:
                query = f"?after={got.last}" if got.last else ""
                budget = rng.randint(5, 80)
                async with ws_connect(
                    f"{ws_base}/v1/rooms/{room_id}/ws{query}", additional_headers=headers
                ) as ws:
                    async for raw in ws:
                        got.add(check_envelope(json.loads(raw)))
                        budget -= 1
                        if budget == 0 or got.finished:
                            break
            return got

        results = await asyncio.wait_for(
            asyncio.gather(
                produce(), sse_consumer(sse_a, True), sse_consumer(sse_b, False), ws_consumer(ws_player)
            ),
            120,
        )
        # Presence events may still trail the last message; compare up to what each client reached.
        for session, got in zip((sse_a, sse_b, ws_player), results[1:], strict=True):
            assert isinstance(got, Collector)
            expected = await visible_seqs(database_url, room_id, session["player"]["id"])
            first = got.seqs[0]
            assert got.seqs == [s for s in expected if first <= s <= got.last]
            assert len(got.seqs) >= total - 10


async def test_a_private_event_reaches_only_its_player_live_and_on_replay(
    server: Any, database_url: str
) -> None:
    base = server.url
    async with httpx.AsyncClient(timeout=30) as http:
        host, alice, bob = await new_room(http, base, "Alice", "Bob")
        room_id = host["room"]["id"]
        url = f"{base}/v1/rooms/{room_id}/events"
        async with (
            sse_stream(http, url, alice["token"]) as a_response,
            sse_stream(http, url, bob["token"]) as b_response,
        ):
            a_events, b_events = sse_events(a_response), sse_events(b_response)
            assert (await anext(a_events)).event == "snapshot"
            assert (await anext(b_events)).event == "snapshot"
            # The game will deal roles this way: a private event in the same log, no doorbell
            # from this process (the server finds it with its catch-up timer).
            secret = NewEvent(
                "role.assigned",
                {"player_id": alice["player"]["id"], "role": "detective", "team": "town", "teammates": []},
                Audience.player,
                alice["player"]["id"],
            )
            private_seq = await append_to_log(database_url, room_id, [secret])
            public_seq = await chat(http, base, host, "after the secret")

            async def until(stream: Any, seq: int) -> list[dict[str, Any]]:
                seen = []
                async for event in stream:
                    seen.append(check_envelope(event))
                    if event.data["seq"] >= seq:
                        return seen
                return seen

            alice_seen = await asyncio.wait_for(until(a_events, public_seq), 10)
            bob_seen = await asyncio.wait_for(until(b_events, public_seq), 10)
        assert private_seq in [e["seq"] for e in alice_seen]
        assert next(e for e in alice_seen if e["type"] == "role.assigned")["data"]["role"] == "detective"
        assert private_seq not in [e["seq"] for e in bob_seen]
        assert all(e["type"] != "role.assigned" for e in bob_seen)

        # Replays filter through the same rule.
        async with sse_stream(http, url, bob["token"], after=0) as response:
            replay = []
            async for event in sse_events(response):
                replay.append(check_envelope(event)["seq"])
                if event.data["seq"] >= public_seq:
                    break
        assert private_seq not in replay
        assert replay == [
            s for s in await visible_seqs(database_url, room_id, bob["player"]["id"]) if s <= public_seq
        ]


async def test_a_kicked_players_streams_close_within_a_second(server: Any) -> None:
    base = server.url
    async with httpx.AsyncClient(timeout=30) as http:
        host, guest = await new_room(http, base, "Guest")
        room_id = host["room"]["id"]
        ws_url = f"{base.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws?access_token={guest['token']}"
        async with (
            sse_stream(http, f"{base}/v1/rooms/{room_id}/events", guest["token"]) as response,
            ws_connect(ws_url) as ws,
        ):
            events = sse_events(response)
            assert (await anext(events)).event == "snapshot"
            assert json.loads(await ws.recv())["type"] == "snapshot"
            loop = asyncio.get_running_loop()
            kicked_at = loop.time()
            kick = await http.delete(
                f"{base}/v1/rooms/{room_id}/players/{guest['player']['id']}",
                headers={"Authorization": f"Bearer {host['token']}"},
            )
            assert kick.status_code == 204

            async def drain_sse() -> list[str]:
                return [e.event async for e in events]

            sse_seen = await asyncio.wait_for(drain_sse(), 1.0)
            assert sse_seen[-1] == "player.left"
            ws_seen: list[str] = []

            async def drain_ws() -> None:
                while True:
                    ws_seen.append(json.loads(await asyncio.wait_for(ws.recv(), 1.0))["type"])

            with pytest.raises(ConnectionClosed) as closed:
                await drain_ws()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4409
            assert ws_seen[-1] == "player.left"
            assert loop.time() - kicked_at < 1.0


async def test_waiting_streams_are_written_by_the_fan_out_itself(server: Any) -> None:
    """Live events reach a stream that waits for them straight from the fan-out, without
    waking its writer task per event: each still arrives once and in order, and /metrics
    counts them. Fails if uvicorn's protocol objects stop offering what the shortcut needs."""
    base = server.url
    async with httpx.AsyncClient(timeout=30) as http:
        host, guest = await new_room(http, base, "Guest")
        room_id = host["room"]["id"]
        before = (await http.get(f"{base}/metrics")).text
        sent: list[int] = []
        sse_got: list[dict[str, Any]] = []
        ws_got: list[dict[str, Any]] = []
        async with (
            room_socket(base, host) as ws,
            sse_stream(http, f"{base}/v1/rooms/{room_id}/events", guest["token"]) as response,
        ):
            events = sse_events(response)
            assert (await anext(events)).event == "snapshot"
            assert json.loads(await ws.recv())["type"] == "snapshot"
            for i in range(10):
                sent.append(await chat(http, base, guest, f"direct {i}"))
                while not sse_got or sse_got[-1]["seq"] < sent[-1]:
                    sse_got.append(check_envelope(await anext(events)))
                while not ws_got or ws_got[-1]["seq"] < sent[-1]:
                    ws_got.append(check_envelope(json.loads(await asyncio.wait_for(ws.recv(), 5))))
        after = (await http.get(f"{base}/metrics")).text
    for got in (sse_got, ws_got):
        assert [e["seq"] for e in got if e["type"] == "chat.message"] == sent
    for name in ("roundtable_events_written_directly_total", "roundtable_events_delivered_total"):
        for transport in ("sse", "ws"):
            label = f'transport="{transport}"'
            assert metric(after, name, label) - metric(before, name, label) >= len(sent), (name, transport)


async def test_a_compressed_websocket_is_written_directly_too(database_url: str, tmp_path: Path) -> None:
    """With per-message compression on, each socket compresses its own frames: the fan-out's
    direct writes go through the socket's own protocol object, and the client inflates them."""
    with serve(database_url, tmp_path / "server.log", {"WS_PER_MESSAGE_DEFLATE": "true"}) as deflating:
        base = deflating.url
        async with httpx.AsyncClient(timeout=30) as http:
            (host,) = await new_room(http, base)
            async with room_socket(base, host) as ws:
                assert ws.response is not None
                assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
                assert json.loads(await ws.recv())["type"] == "snapshot"
                sent = [await chat(http, base, host, f"squeezed {i} " + "z" * 200) for i in range(5)]
                got: list[int] = []
                while len(got) < len(sent):
                    message = check_envelope(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                    if message["type"] == "chat.message":
                        got.append(message["seq"])
                # A command over the socket itself: its ack and its event, compressed together.
                await ws.send(json.dumps({"type": "chat", "request_id": "own", "text": "z" * 200}))
                ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert ack["type"] == "ack"
                assert ack["request_id"] == "own"
                own = check_envelope(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                assert own["seq"] == ack["seq"]
                sent.append(ack["seq"])
                got.append(own["seq"])
            page = (await http.get(f"{base}/metrics")).text
        assert got == sent
        assert metric(page, "roundtable_events_written_directly_total", 'transport="ws"') >= len(sent)


async def test_websocket_commands_are_answered_by_request_id(server: Any) -> None:
    base = server.url
    async with httpx.AsyncClient(timeout=30) as http:
        (host,) = await new_room(http, base)
        async with room_socket(base, host) as ws:
            # The client offered compression (websockets does by default); the server declines:
            # it would compress every event once per socket.
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            assert json.loads(await ws.recv())["type"] == "snapshot"
            await ws.send(json.dumps({"type": "ping", "request_id": "p1"}))
            await ws.send(json.dumps({"type": "chat", "request_id": "c1", "text": "  over the socket "}))
            await ws.send(json.dumps({"type": "chat", "request_id": "c2", "text": ""}))
            await ws.send(json.dumps({"type": "vote", "request_id": "v1"}))
            await ws.send("not json")
            replies: dict[str | None, dict[str, Any]] = {}
            chat_event = None
            while len(replies) < 5 or chat_event is None:
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if message["type"] in ("ack", "error"):
                    replies[message["request_id"]] = message
                elif message["type"] == "chat.message":
                    chat_event = check_envelope(message)
        assert replies["p1"] == {"type": "ack", "request_id": "p1"}
        assert replies["c1"]["type"] == "ack"
        assert replies["c1"]["seq"] == chat_event["seq"]
        assert chat_event["data"]["text"] == "over the socket"
        assert replies["c2"]["type"] == "error"
        assert replies["c2"]["code"] == "validation_failed"
        assert replies["v1"]["type"] == "error"
        assert replies["v1"]["code"] == "validation_failed"
        assert replies[None]["code"] == "validation_failed"


async def test_sockets_dropped_while_events_flow_end_quietly(server: Any) -> None:
    """Clients that vanish (no close frame) while events are being written to them: their
    sockets end without an error in the server's log, whichever of reading or writing
    noticed first."""
    base = server.url
    async with httpx.AsyncClient(timeout=30) as http:
        host, guest = await new_room(http, base, "Guest")
        room_id = host["room"]["id"]
        ws_url = f"{base.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws"
        headers = {"Authorization": f"Bearer {guest['token']}"}
        for _ in range(3):
            sockets = [await ws_connect(ws_url, additional_headers=headers) for _ in range(20)]
            for ws in sockets:
                assert json.loads(await ws.recv())["type"] == "snapshot"
            flood = asyncio.gather(*(chat(http, base, host, f"flood {i}") for i in range(60)))
            await asyncio.sleep(0.05)
            for ws in sockets:
                ws.transport.abort()
            await flood
        await asyncio.sleep(1.0)
    text = server.log.read_text()
    assert "never retrieved" not in text, text
    assert "Traceback" not in text, text


async def test_websocket_refuses_bad_origins_tokens_and_rooms(server: Any) -> None:
    base = server.url
    ws_base = base.replace("http://", "ws://")
    async with httpx.AsyncClient(timeout=30) as http:
        (a,) = await new_room(http, base)
        (b,) = await new_room(http, base)
    a_url = f"{ws_base}/v1/rooms/{a['room']['id']}/ws"

    async def close_code(url: str, origin: str | None = None) -> int:
        async with ws_connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code

    # Refused with a close code, which a browser's WebSocket can read (an HTTP 403 it cannot).
    assert await close_code(f"{a_url}?access_token={a['token']}", "https://evil.example") == 1008
    assert await close_code(a_url) == 4401
    assert await close_code(f"{a_url}?access_token=wrong") == 4401
    assert await close_code(f"{a_url}?access_token={b['token']}") == 4403


async def test_tokens_never_reach_the_log(server: Any) -> None:
    base = server.url
    async with httpx.AsyncClient(timeout=30) as http:
        (host,) = await new_room(http, base)
        room_id = host["room"]["id"]
        token = host["token"]
        async with http.stream("GET", f"{base}/v1/rooms/{room_id}/events?access_token={token}") as response:
            assert response.status_code == 200
            await anext(sse_events(response))
        async with ws_connect(
            f"{base.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws?access_token={token}"
        ) as ws:
            await ws.recv()
        await http.get(f"{base}/v1/rooms/{room_id}/events?access_token={token}x")  # a refused one too
    await asyncio.sleep(0.2)
    log = server.log.read_text()
    assert f"/v1/rooms/{room_id}/events" in log  # the requests were logged...
    assert token not in log  # ...without the token
    assert re.search(r"access_token=\[redacted\]", log)


async def test_idle_streams_hold_no_database_connections(database_url: str, tmp_path: Path) -> None:
    with serve(database_url, tmp_path / "server.log", {"MAX_STREAMS_PER_PLAYER": "1000"}) as server:
        base = server.url
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            (host,) = await new_room(http, base)
            room_id = host["room"]["id"]
            url = f"{base}/v1/rooms/{room_id}/events"
            opened = 0

            async def hold(stop: asyncio.Event) -> None:
                nonlocal opened
                async with sse_stream(http, url, host["token"]) as response:
                    # Keep the parser referenced: collecting it would close the stream.
                    events = sse_events(response)
                    await anext(events)
                    opened += 1
                    await stop.wait()

            stop = asyncio.Event()
            holders = [asyncio.create_task(hold(stop)) for _ in range(200)]
            checked_out: list[float] = []
            try:
                await wait_for(lambda: opened == 200, within=60)
                await asyncio.sleep(0.5)
                # The server's timers (catch-up, deadlines, leases) borrow a connection for a
                # moment now and then; the streams never hold one. Sample a few times.
                for _ in range(10):
                    metrics = (await http.get(f"{base}/metrics")).text
                    checked_out.append(metric(metrics, "roundtable_db_pool_checked_out"))
                    await asyncio.sleep(0.1)
            finally:
                stop.set()
                await asyncio.gather(*holders, return_exceptions=True)
        assert 'roundtable_open_streams{transport="sse"} 200.0' in metrics
        assert min(checked_out) == 0.0, checked_out
        assert max(checked_out) <= 2.0, checked_out  # 200 streams holding one each would show here


async def test_presence_changes_on_first_open_and_last_close_but_not_on_a_quick_reconnect(
    server: Any,
) -> None:
    base = server.url
    async with httpx.AsyncClient(timeout=30) as http:
        host, guest = await new_room(http, base, "Guest")
        room_id = host["room"]["id"]
        url = f"{base}/v1/rooms/{room_id}/events"
        async with sse_stream(http, url, host["token"]) as response:
            watched = sse_events(response)
            assert (await anext(watched)).event == "snapshot"

            async def guest_stream_briefly() -> None:
                async with sse_stream(http, url, guest["token"]) as own:
                    guest_events = sse_events(own)
                    await anext(guest_events)

            await guest_stream_briefly()  # first stream: connected
            await guest_stream_briefly()  # reconnect within the grace period: silent
            await asyncio.sleep(1.0)  # gone longer than the grace period: disconnected
            marker = await chat(http, base, host, "marker")
            presence = []
            async for event in watched:
                payload = check_envelope(event)
                if (
                    payload["type"] == "presence.changed"
                    and payload["data"]["player_id"] == guest["player"]["id"]
                ):
                    presence.append(payload["data"]["connected"])
                if payload["seq"] >= marker:
                    break
        assert presence == [True, False]
        players = (
            await http.get(
                f"{base}/v1/rooms/{room_id}/state", headers={"Authorization": f"Bearer {host['token']}"}
            )
        ).json()["players"]
        assert {p["nickname"]: p["connected"] for p in players} == {"Host": True, "Guest": False}


async def test_a_player_still_shown_connected_reopens_a_stream_while_the_room_is_busy(
    server: Any, database_url: str
) -> None:
    """After a crash the room still shows its players connected, and they all reconnect at
    once: such a stream opens without queueing on the room's lock (held here the whole time,
    as by a long command), and the lease it takes makes its close count as usual."""
    base = server.url
    async with httpx.AsyncClient(timeout=30) as http:
        host, guest = await new_room(http, base, "Guest")
        room_id = host["room"]["id"]
        url = f"{base}/v1/rooms/{room_id}/events"
        busy = await asyncpg.connect(database_url)
        try:
            # The worker that streamed to the guest died without saying so.
            await busy.execute(
                "UPDATE players SET connected = true WHERE id = $1", uuid.UUID(guest["player"]["id"])
            )
            transaction = busy.transaction()
            await transaction.start()
            # The lock every command takes (repository.lock_room).
            await busy.execute("SELECT 1 FROM rooms WHERE id = $1 FOR NO KEY UPDATE", uuid.UUID(room_id))
            async with sse_stream(http, url, guest["token"]) as own:
                snapshot = await asyncio.wait_for(anext(sse_events(own)), 3)
            await transaction.rollback()
        finally:
            await busy.close()
        players = {p["nickname"]: p["connected"] for p in snapshot.data["data"]["players"]}
        assert players == {"Host": False, "Guest": True}

        # The stream closed: after the grace period the guest is shown disconnected.
        async def guest_connected() -> bool:
            state = await http.get(
                f"{base}/v1/rooms/{room_id}/state", headers={"Authorization": f"Bearer {host['token']}"}
            )
            shown: dict[str, bool] = {p["nickname"]: p["connected"] for p in state.json()["players"]}
            return shown["Guest"]

        deadline = asyncio.get_running_loop().time() + 5
        while await guest_connected():
            assert asyncio.get_running_loop().time() < deadline, "the guest stayed connected"
            await asyncio.sleep(0.1)
