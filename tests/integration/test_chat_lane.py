"""The chat lane answers `POST /v1/rooms/{id}/messages` exactly as the FastAPI route does.

Each request goes to the app as served (the lane in front) and to the same app with the lane
taken out (the route alone), both on the test database; their answers must agree: status,
content type, problem body, headers a client acts on.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from backend.app import create_app
from backend.core.config import Settings
from backend.realtime.chat_lane import ChatLane
from tests.conftest import bearer, create_room

SETTINGS = Settings(chat_per_second=0.01, chat_burst=3, max_body_bytes=2048)


async def started(lane: bool, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(SETTINGS, database_url=database_url)
    if not lane:
        lane_cls: object = ChatLane
        app.user_middleware = [m for m in app.user_middleware if m.cls is not lane_cls]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roundtable.test") as client:
            yield client


@pytest.fixture
async def with_lane(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for client in started(True, database_url):
        yield client


@pytest.fixture
async def route_only(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for client in started(False, database_url):
        yield client


def answer(response: httpx.Response) -> dict[str, Any]:
    """What a client sees of an answer, minus the seq a success is given."""
    body = response.json()
    if response.status_code == 201:
        body["seq"] = isinstance(body.get("seq"), int)
    return {
        "status": response.status_code,
        "content-type": response.headers.get("content-type"),
        "retry-after": "retry-after" in response.headers,
        "www-authenticate": response.headers.get("www-authenticate"),
        "body": body,
    }


async def both(
    with_lane: httpx.AsyncClient, route_only: httpx.AsyncClient, path: str, **request: Any
) -> dict[str, Any]:
    lane_answer = answer(await with_lane.post(path, **request))
    route_answer = answer(await route_only.post(path, **request))
    assert lane_answer == route_answer
    return lane_answer


async def test_well_formed_and_refused_chats_are_answered_as_the_route_answers_them(
    with_lane: httpx.AsyncClient, route_only: httpx.AsyncClient
) -> None:
    host = await create_room(with_lane)
    room_id, token = host["room"]["id"], host["token"]
    other = await create_room(with_lane)
    path = f"/v1/rooms/{room_id}/messages"
    json_type = {"Content-Type": "application/json"}

    said = await both(with_lane, route_only, path, json={"text": "hello"}, headers=bearer(token))
    assert said["status"] == 201
    assert said["body"] == {"seq": True, "channel": "room"}
    assert said["content-type"] == "application/json"

    cases: list[tuple[str, dict[str, Any], int]] = [
        # Refused by the command itself: the lane renders them with the app's handlers.
        ("unknown token", {"json": {"text": "hi"}, "headers": bearer("not-a-token")}, 401),
        ("another room's token", {"json": {"text": "hi"}, "headers": bearer(other["token"])}, 403),
        # Left to the route.
        ("no token", {"json": {"text": "hi"}}, 401),
        ("basic auth", {"json": {"text": "hi"}, "headers": {"Authorization": "Basic eDp5"}}, 401),
        ("not JSON", {"content": b"{text", "headers": {**bearer(token), **json_type}}, 422),
        ("not UTF-8", {"content": b'{"text": "\xff"}', "headers": {**bearer(token), **json_type}}, 422),
        ("empty text", {"json": {"text": "   "}, "headers": bearer(token)}, 422),
        ("unknown field", {"json": {"text": "hi", "loud": True}, "headers": bearer(token)}, 422),
        ("not an object", {"json": ["hi"], "headers": bearer(token)}, 422),
        ("too large", {"json": {"text": "x" * 4000}, "headers": bearer(token)}, 413),
    ]
    for name, request, status in cases:
        got = await both(with_lane, route_only, path, **request)
        assert got["status"] == status, name
        assert got["content-type"] == "application/problem+json", name

    missing = f"/v1/rooms/{uuid.uuid4()}/messages"
    got = await both(with_lane, route_only, missing, json={"text": "hi"}, headers=bearer(token))
    assert got["status"] == 403
    assert got["content-type"] == "application/problem+json"
    not_an_id = "/v1/rooms/not-a-room/messages"
    got = await both(with_lane, route_only, not_an_id, json={"text": "hi"}, headers=bearer(token))
    assert got["status"] == 422


async def test_a_rate_limited_chat_is_refused_alike_with_when_to_retry(
    with_lane: httpx.AsyncClient, route_only: httpx.AsyncClient
) -> None:
    host = await create_room(with_lane)
    path = f"/v1/rooms/{host['room']['id']}/messages"
    # Each app keeps its own limiter: both let the burst through, then both refuse.
    for i in range(SETTINGS.chat_burst):
        said = await both(with_lane, route_only, path, json={"text": f"m{i}"}, headers=bearer(host["token"]))
        assert said["status"] == 201
    refused = await both(with_lane, route_only, path, json={"text": "more"}, headers=bearer(host["token"]))
    assert refused["status"] == 429
    assert refused["retry-after"]
    assert refused["body"]["code"] == "rate_limited"
