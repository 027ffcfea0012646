"""Hostile inputs get a 4xx problem or a close code the AsyncAPI file lists, never a 500, a
1011 or a traceback in the server's log.

Every input goes to a real server process of this module's own (uvicorn, the chat lane, the
body limit, the WebSocket protocol as `make run` serves them), whose log each test reads
afterwards; a few also to the in-process app.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import bearer, create_room
from tests.game_support import new_room, start
from tests.support import Server, serve

BIGINT_MAX = 2**63 - 1
MAX_DEPTH = 32  # the default MAX_JSON_DEPTH


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with serve(database_url, log, {"CHAT_PER_SECOND": "1000", "CHAT_BURST": "1000"}) as s:
        yield s


@pytest.fixture(autouse=True)
def quiet_log(server: Server) -> Iterator[None]:
    """Nothing a test sends may leave a traceback or an error in the server's log."""
    start = server.log.stat().st_size
    yield
    with server.log.open("rb") as f:
        f.seek(start)
        written = f.read().decode(errors="replace")
    assert "Traceback" not in written, written
    assert " ERROR " not in written, written


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def nested(depth: int, inner: Any = "x") -> Any:
    """`inner` wrapped in `depth` lists (as Python objects)."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def deep_json(depth: int) -> str:
    """A JSON array nested `depth` deep (too deep for Python's json module to build as a literal)."""
    return "[" * depth + "]" * depth


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


def ws_url(server: Server, room_id: str, query: str = "") -> str:
    return f"{server.url.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws{query}"


async def read_all(ws: ClientConnection) -> None:
    while True:
        await ws.recv()


async def close_code(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes the socket; return its close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(read_all(ws), 10)
    assert closed.value.rcvd is not None, "the connection dropped without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def reply_to(ws: ClientConnection, request_id: str | None) -> dict[str, Any]:
    """Skip events until the ack or error of `request_id`; return it."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] in ("ack", "error") and message["request_id"] == request_id:
            return message


# HTTP bodies


async def test_a_chat_nested_a_thousand_deep_is_a_422_and_the_connection_lives_on(
    http: httpx.AsyncClient,
) -> None:
    session = await create_room(http)
    path, headers = f"/v1/rooms/{session['room']['id']}/messages", bearer(session["token"])
    for depth in (1000, MAX_DEPTH + 1):
        body = '{"text": ' + deep_json(depth) + "}"
        sent = await http.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
        problem = assert_problem(sent, 422, "validation_failed")
        assert problem["errors"] == [
            {"loc": ["body"], "message": f"JSON nested deeper than {MAX_DEPTH} levels"}
        ]
    # Without the token the lane steps aside: the route answers the same.
    sent = await http.post(
        path, content='{"text": ' + deep_json(1000) + "}", headers={"Content-Type": "application/json"}
    )
    assert_problem(sent, 422, "validation_failed")
    # The same keep-alive connection goes on serving.
    assert (await http.post(path, json={"text": "still here"}, headers=headers)).status_code == 201


async def test_nesting_deeper_than_the_limit_is_refused_on_every_json_route(http: httpx.AsyncClient) -> None:
    within = await http.post(
        "/v1/rooms", json={"name": nested(MAX_DEPTH - 1), "nickname": "A", "ruleset": "mafia"}
    )
    # Deep enough to parse, wrong for the schema: the field is named.
    assert assert_problem(within, 422, "validation_failed")["errors"][0]["loc"] == ["body", "name"]
    for content_type in ("application/json", None):
        headers = {"Content-Type": content_type} if content_type else {}
        too_deep = await http.post(
            "/v1/rooms",
            content=json.dumps({"name": nested(MAX_DEPTH), "nickname": "A", "ruleset": "mafia"}),
            headers=headers,
        )
        problem = assert_problem(too_deep, 422, "validation_failed")
        assert problem["errors"] == [
            {"loc": ["body"], "message": f"JSON nested deeper than {MAX_DEPTH} levels"}
        ]
    # Brackets inside strings are text, not nesting.
    name = "[{" * 40
    created = await http.post("/v1/rooms", json={"name": name[:40], "nickname": "A", "ruleset": "mafia"})
    assert created.status_code == 201, created.text


async def test_a_chunked_body_over_the_limit_is_a_413(http: httpx.AsyncClient) -> None:
    session = await create_room(http)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(200):
            yield b"x" * 1024
        yield b'"}'

    for headers in (bearer(session["token"]), {}):  # through the chat lane, and to the route
        sent = await http.post(
            f"/v1/rooms/{session['room']['id']}/messages",
            content=chunks(),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert "content-length" not in sent.request.headers
        assert_problem(sent, 413, "body_too_large")
    created = await http.post("/v1/rooms", content=chunks(), headers={"Content-Type": "application/json"})
    assert_problem(created, 413, "body_too_large")


async def test_advance_with_a_null_body_is_a_422_and_closes_nothing(http: httpx.AsyncClient) -> None:
    room_id, seats = await new_room(http, 4)
    await start(http, room_id, seats)
    before = (await http.get(f"/v1/rooms/{room_id}")).json()
    path = f"/v1/rooms/{room_id}/advance"
    for body in ("null", "{}", "[]", "1", '"x"'):
        sent = await http.post(
            path, content=body, headers={**seats[0].auth, "Content-Type": "application/json"}
        )
        problem = assert_problem(sent, 422, "validation_failed")
        assert problem["errors"][0]["loc"][0] == "body"
    after = (await http.get(f"/v1/rooms/{room_id}")).json()
    assert (after["round"], after["phase"]) == (before["round"], before["phase"])
    # No body at all still closes the phase unguarded, as the spec allows.
    closed = await http.post(path, headers=seats[0].auth)
    assert closed.status_code == 200, closed.text
    assert closed.json()["phase"] != before["phase"]


async def test_a_bad_room_id_on_a_token_route_is_named_once(http: httpx.AsyncClient) -> None:
    session = await create_room(http)
    for method, path in (("GET", "state"), ("POST", "start"), ("POST", "advance"), ("GET", "events")):
        sent = await http.request(method, f"/v1/rooms/not-a-room/{path}", headers=bearer(session["token"]))
        problem = assert_problem(sent, 422, "validation_failed")
        assert [e["loc"] for e in problem["errors"]] == [["path", "room_id"]], (path, problem)


# Resume points


async def test_sse_resume_points_past_a_bigint_are_a_422(http: httpx.AsyncClient) -> None:
    session = await create_room(http)
    path, headers = f"/v1/rooms/{session['room']['id']}/events", bearer(session["token"])
    for after in (str(BIGINT_MAX + 1), "99999999999999999999", "-1", "abc"):
        sent = await http.get(path, params={"after": after}, headers=headers)
        assert_problem(sent, 422, "validation_failed")
    sent = await http.get(path, headers={**headers, "Last-Event-ID": "9" * 19})
    assert_problem(sent, 422, "validation_failed")
    # The largest seq there can be is a resume point like any other: nothing after it yet.
    async with http.stream("GET", path, params={"after": BIGINT_MAX}, headers=headers) as opened:
        assert opened.status_code == 200
        assert (await anext(opened.aiter_lines())).startswith("retry:")


async def test_websocket_resume_points_that_are_not_a_seq_close_4422(
    server: Server, http: httpx.AsyncClient
) -> None:
    session = await create_room(http)
    room_id, token = session["room"]["id"], session["token"]
    for after in (str(2**63), "99999999999999999999", "-1", "abc"):
        async with ws_connect(ws_url(server, room_id, f"?after={after}&access_token={token}")) as ws:
            assert await close_code(ws) == (4422, "validation_failed")
    async with ws_connect(ws_url(server, room_id, f"?after={BIGINT_MAX}&access_token={token}")) as ws:
        await ws.send(json.dumps({"type": "ping", "request_id": "p"}))
        assert (await reply_to(ws, "p"))["type"] == "ack"


async def test_a_refused_origin_is_closed_1008(server: Server, http: httpx.AsyncClient) -> None:
    session = await create_room(http)
    url = ws_url(server, session["room"]["id"], f"?access_token={session['token']}")
    async with ws_connect(url, origin="https://evil.example") as ws:  # type: ignore[arg-type]
        assert await close_code(ws) == (1008, "origin not allowed")
    # A room id that is not one is a 4422 too, unless the origin is refused: that comes first.
    not_a_room = ws_url(server, "not-a-room", "?after=abc")
    async with ws_connect(not_a_room) as ws:
        assert await close_code(ws) == (4422, "validation_failed")
    async with ws_connect(not_a_room, origin="https://evil.example") as ws:  # type: ignore[arg-type]
        assert await close_code(ws) == (1008, "origin not allowed")


# WebSocket frames


async def test_a_binary_frame_closes_the_socket_1003(server: Server, http: httpx.AsyncClient) -> None:
    session = await create_room(http)
    async with ws_connect(ws_url(server, session["room"]["id"], f"?access_token={session['token']}")) as ws:
        await ws.send(b'{"type": "ping", "request_id": "p"}')
        assert (await close_code(ws))[0] == 1003


async def test_a_deeply_nested_command_is_an_error_and_the_socket_stays_open(
    server: Server, http: httpx.AsyncClient
) -> None:
    session = await create_room(http)
    async with ws_connect(ws_url(server, session["room"]["id"], f"?access_token={session['token']}")) as ws:
        for depth in (5000, MAX_DEPTH + 1):
            await ws.send('{"type": "chat", "request_id": "deep", "text": ' + deep_json(depth) + "}")
            error = await reply_to(ws, None)  # not read far enough to find its request_id
            assert (error["type"], error["code"]) == ("error", "validation_failed"), error
            assert error["detail"] == f"JSON nested deeper than {MAX_DEPTH} levels."
        await ws.send('{"request_id": "top", "x": ' + deep_json(5000) + "}")
        assert (await reply_to(ws, None))["code"] == "validation_failed"
        # A request_id that cannot be echoed (a lone surrogate) is not echoed.
        await ws.send('{"type": "ping", "request_id": "\\ud800"}')
        assert (await reply_to(ws, None))["code"] == "validation_failed"
        await ws.send(json.dumps({"type": "chat", "request_id": "ok", "text": "[{" * 20}))
        assert (await reply_to(ws, "ok"))["type"] == "ack"


# The same inputs to the app in-process (no uvicorn in between)


async def test_the_app_in_process_refuses_them_alike(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    room_id, seats = await new_room(client, 4)
    auth = {**seats[0].auth, "Content-Type": "application/json"}
    deep_chat = await client.post(
        f"/v1/rooms/{room_id}/messages", content='{"text": ' + deep_json(1000) + "}", headers=auth
    )
    assert_problem(deep_chat, 422, "validation_failed")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b"x" * 1024

    chunked = await client.post(f"/v1/rooms/{room_id}/messages", content=chunks(), headers=auth)
    assert_problem(chunked, 413, "body_too_large")
    await start(client, room_id, seats)
    assert_problem(
        await client.post(f"/v1/rooms/{room_id}/advance", content="null", headers=auth),
        422,
        "validation_failed",
    )
    bad_room = await client.get("/v1/rooms/nope/state", headers=auth)
    assert len(assert_problem(bad_room, 422, "validation_failed")["errors"]) == 1
    past = await client.get(f"/v1/rooms/{room_id}/events", params={"after": 2**63}, headers=auth)
    assert_problem(past, 422, "validation_failed")
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
