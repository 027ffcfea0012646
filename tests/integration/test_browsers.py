"""Browsers and caches: CORS for pages on other origins, security headers, no-store on member
answers, and single-use stream tickets in place of the token in a stream's URL.

Two server processes share the test database (two workers, as far as tickets go): a ticket
one of them consumed opens nothing on the other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from backend.core.logs import redact
from tests.conftest import bearer
from tests.game_support import new_room, start
from tests.support import Server, serve, sse_events, wait_for

FRONT = "http://front.test:5173"
STRANGER = "http://evil.test:5173"
TICKET_SECONDS = 5


@pytest.fixture(scope="module")
def servers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Two servers on one database; CORS_ORIGINS given comma-separated to one, as JSON to the other."""
    logs = tmp_path_factory.mktemp("browsers")
    common = {"STREAM_TICKET_SECONDS": str(TICKET_SECONDS)}
    with (
        serve(database_url, logs / "a.log", {**common, "CORS_ORIGINS": f"{FRONT}, http://other.test"}) as a,
        serve(database_url, logs / "b.log", {**common, "CORS_ORIGINS": f'["{FRONT}"]'}) as b,
    ):
        yield a, b
    for log in (a.log, b.log):
        assert "Traceback" not in log.read_text(), log.read_text()


async def host_session(http: httpx.AsyncClient, base: str) -> dict[str, Any]:
    created = await http.post(
        f"{base}/v1/rooms", json={"name": "Browsers", "nickname": "Host", "ruleset": "mafia"}
    )
    assert created.status_code == 201, created.text
    session: dict[str, Any] = created.json()
    return session


async def ticket_for(http: httpx.AsyncClient, base: str, session: dict[str, Any]) -> str:
    issued = await http.post(
        f"{base}/v1/rooms/{session['room']['id']}/stream-tickets", headers=bearer(session["token"])
    )
    assert issued.status_code == 201, issued.text
    ticket: str = issued.json()["ticket"]
    return ticket


async def first_sse_event(http: httpx.AsyncClient, url: str) -> tuple[int, Any]:
    """Open a stream; return its status and its first event (None when refused: the problem)."""
    async with http.stream("GET", url, timeout=10) as response:
        if response.status_code != 200:
            return response.status_code, (await response.aread(), response.headers)
        return 200, await anext(sse_events(response))


# ---- CORS ------------------------------------------------------------------------------------


def preflight(origin: str, method: str = "POST", headers: str = "content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_a_listed_origin_gets_its_preflight_answered_and_can_read_the_answer(
    servers: tuple[Server, Server],
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for server in servers:  # the list read comma-separated and as JSON
            asked = "authorization, content-type, idempotency-key, last-event-id"
            answer = await http.options(
                f"{server.url}/v1/rooms/{uuid.uuid4()}/votes", headers=preflight(FRONT, headers=asked)
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["access-control-allow-origin"] == FRONT
            assert "POST" in answer.headers["access-control-allow-methods"]
            allowed = answer.headers["access-control-allow-headers"].lower()
            for name in ("authorization", "content-type", "idempotency-key", "last-event-id"):
                assert name in allowed
            assert int(answer.headers["access-control-max-age"]) > 0

        base = servers[0].url
        created = await http.post(
            f"{base}/v1/rooms",
            json={"name": "Cross", "nickname": "Host", "ruleset": "mafia"},
            headers={"Origin": FRONT},
        )
        assert created.status_code == 201
        assert created.headers["access-control-allow-origin"] == FRONT
        exposed = created.headers["access-control-expose-headers"].lower()
        assert "location" in exposed
        assert "retry-after" in exposed
        session = created.json()
        # The chat lane answers past the app's stack; its answers are readable too.
        said = await http.post(
            f"{base}/v1/rooms/{session['room']['id']}/messages",
            json={"text": "hi"},
            headers={**bearer(session["token"]), "Origin": FRONT},
        )
        assert said.status_code == 201
        assert said.headers["access-control-allow-origin"] == FRONT

        # An origin not listed: its preflight is refused, its answers are not readable.
        answer = await http.options(f"{base}/v1/rooms", headers=preflight(STRANGER))
        assert answer.status_code >= 400
        assert "access-control-allow-origin" not in answer.headers
        listed = await http.get(f"{base}/v1/rooms", headers={"Origin": STRANGER})
        assert "access-control-allow-origin" not in listed.headers


async def test_a_cors_origin_may_open_a_websocket(servers: tuple[Server, Server]) -> None:
    base = servers[0].url
    async with httpx.AsyncClient(timeout=10) as http:
        session = await host_session(http, base)
        ticket = await ticket_for(http, base, session)
    url = f"{base.replace('http://', 'ws://')}/v1/rooms/{session['room']['id']}/ws?ticket={ticket}"
    async with ws_connect(url, origin=FRONT) as ws:  # type: ignore[arg-type]
        assert '"snapshot"' in str(await asyncio.wait_for(ws.recv(), 5))


# ---- headers ---------------------------------------------------------------------------------


async def test_pages_send_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/", "/static/app.js", "/docs", "/docs/api", "/docs/events", "/redoc"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert page.headers["x-content-type-options"] == "nosniff", path
        assert page.headers["x-frame-options"] == "DENY", path
        assert page.headers["referrer-policy"] == "no-referrer", path
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
        assert "object-src 'none'" in csp, path
    # The game page runs only its own scripts.
    page_csp = (await client.get("/")).headers["content-security-policy"]
    assert "script-src 'self';" in page_csp
    # The docs pages load their renderers from this server: their CSP lets in no other host
    # (tests/e2e/test_docs_offline.py renders them in Chromium under it).
    for path in ("/docs", "/docs/api", "/redoc", "/docs/events"):
        csp = (await client.get(path)).headers["content-security-policy"]
        assert "http" not in csp, (path, csp)
    assert "'unsafe-eval'" in (await client.get("/docs/events")).headers["content-security-policy"]
    assert "'unsafe-eval'" not in (await client.get("/docs")).headers["content-security-policy"]
    health = await client.get("/healthz")
    assert health.headers["x-content-type-options"] == "nosniff"


async def test_every_member_answer_is_no_store(client: httpx.AsyncClient) -> None:
    # (Without CORS_ORIGINS, as here, no other origin is allowed; the page's own needs nothing.)
    assert (
        "access-control-allow-origin"
        not in (await client.options("/v1/rooms", headers=preflight(FRONT))).headers
    )
    answers: dict[str, httpx.Response] = {}
    created = await client.post(
        "/v1/rooms",
        json={"name": "Caches", "nickname": "Host", "ruleset": "mafia"},
        headers={"Origin": "http://roundtable.test"},
    )
    answers["create"] = created
    room_id, host = created.json()["room"]["id"], created.json()["token"]
    answers["join"] = await client.post(f"/v1/rooms/{room_id}/players", json={"nickname": "Guest"})
    answers["state"] = await client.get(f"/v1/rooms/{room_id}/state", headers=bearer(host))
    answers["patch"] = await client.patch(
        f"/v1/rooms/{room_id}", json={"name": "Renamed"}, headers=bearer(host)
    )
    answers["chat"] = await client.post(
        f"/v1/rooms/{room_id}/messages", json={"text": "hi"}, headers=bearer(host)
    )
    answers["ticket"] = await client.post(f"/v1/rooms/{room_id}/stream-tickets", headers=bearer(host))
    answers["refused"] = await client.get(f"/v1/rooms/{room_id}/state", headers=bearer("nope"))

    game_id, seats = await new_room(client, 4)
    await start(client, game_id, seats)
    mafia = next(s for s in seats if s.role == "mafia")
    target = next(s for s in seats if s.role != "mafia")
    answers["vote"] = await client.post(
        f"/v1/rooms/{game_id}/votes", json={"target_player_id": target.id}, headers=mafia.auth
    )
    answers["rounds"] = await client.get(f"/v1/rooms/{game_id}/rounds", headers=seats[0].auth)
    answers["advance"] = await client.post(f"/v1/rooms/{game_id}/advance", headers=seats[0].auth)
    answers["start"] = await client.post(f"/v1/rooms/{game_id}/start", headers=seats[0].auth)  # 409 now

    for name, answer in answers.items():
        assert answer.status_code < 500, (name, answer.text)
        assert answer.headers.get("cache-control") == "no-store", (name, answer.status_code, answer.headers)
        assert answer.headers["x-content-type-options"] == "nosniff", name
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "create": 201, "join": 201, "state": 200, "patch": 200, "chat": 201, "ticket": 201, "refused": 401,
        "vote": 201, "rounds": 200, "advance": 200, "start": 409,
    }  # fmt: skip


# ---- stream tickets --------------------------------------------------------------------------


async def test_a_ticket_opens_one_stream_once_on_any_worker(servers: tuple[Server, Server]) -> None:
    a, b = servers
    async with httpx.AsyncClient(timeout=10) as http:
        session = await host_session(http, a.url)
        room_id = session["room"]["id"]
        issued = await http.post(
            f"{a.url}/v1/rooms/{room_id}/stream-tickets", headers=bearer(session["token"])
        )
        assert issued.status_code == 201
        assert issued.headers["cache-control"] == "no-store"
        ticket = issued.json()["ticket"]
        assert session["token"] not in ticket
        # Valid for STREAM_TICKET_SECONDS, on the database clock.
        expires = datetime.fromisoformat(issued.json()["expires_at"])
        assert (
            timedelta(seconds=TICKET_SECONDS - 2)
            < expires - datetime.now(UTC)
            <= timedelta(seconds=TICKET_SECONDS + 1)
        )

        status, event = await first_sse_event(http, f"{a.url}/v1/rooms/{room_id}/events?ticket={ticket}")
        assert status == 200
        assert event.event == "snapshot"
        assert event.data["data"]["me"]["id"] == session["player"]["id"]

        # Used: refused here and on the other worker, as a 401 problem.
        for base in (a.url, b.url):
            status, (body, headers) = await first_sse_event(
                http, f"{base}/v1/rooms/{room_id}/events?ticket={ticket}"
            )
            assert status == 401
            assert headers["content-type"] == "application/problem+json"
            assert b'"code":"unauthorized"' in body

        # Raced from both workers at once: exactly one stream opens.
        raced = await ticket_for(http, a.url, session)
        urls = [f"{base}/v1/rooms/{room_id}/events?ticket={raced}" for base in (a.url, b.url) * 4]
        statuses = [status for status, _ in await asyncio.gather(*(first_sse_event(http, u) for u in urls))]
        assert sorted(statuses) == [200] + [401] * 7


async def test_unknown_expired_and_foreign_tickets_are_refused(
    servers: tuple[Server, Server], database_url: str
) -> None:
    base = servers[0].url
    async with httpx.AsyncClient(timeout=10) as http:
        session = await host_session(http, base)
        other = await host_session(http, base)
        room_id = session["room"]["id"]
        events = f"{base}/v1/rooms/{room_id}/events"

        assert (await http.get(f"{events}?ticket=made-up")).status_code == 401
        assert (await http.post(f"{base}/v1/rooms/{room_id}/stream-tickets")).status_code == 401
        assert (
            await http.post(f"{base}/v1/rooms/{room_id}/stream-tickets", headers=bearer(other["token"]))
        ).status_code == 403

        # Past its expiry (moved there on the database clock) a ticket opens nothing.
        expired = await ticket_for(http, base, session)
        conn = await asyncpg.connect(database_url)
        try:
            moved = await conn.execute(
                "UPDATE stream_tickets SET expires_at = now() - interval '1 second' WHERE player_id = $1",
                uuid.UUID(session["player"]["id"]),
            )
            assert moved == "UPDATE 1"
        finally:
            await conn.close()
        assert (await http.get(f"{events}?ticket={expired}")).status_code == 401

        # Another room's ticket: refused as another room's token is, and used up.
        foreign = await ticket_for(http, base, other)
        assert (await http.get(f"{events}?ticket={foreign}")).status_code == 403
        status, _ = await first_sse_event(
            http, f"{base}/v1/rooms/{other['room']['id']}/events?ticket={foreign}"
        )
        assert status == 401

        # A player who left cannot use a ticket they took before.
        guest = await http.post(f"{base}/v1/rooms/{room_id}/players", json={"nickname": "Guest"})
        kept = await ticket_for(http, base, guest.json())
        left = await http.delete(
            f"{base}/v1/rooms/{room_id}/players/{guest.json()['player']['id']}",
            headers=bearer(guest.json()["token"]),
        )
        assert left.status_code == 204
        assert (await http.get(f"{events}?ticket={kept}")).status_code == 401

        # The token in the URL still works, for compatibility.
        status, event = await first_sse_event(http, f"{events}?access_token={session['token']}")
        assert (status, event.event) == (200, "snapshot")


async def test_a_ticket_opens_one_websocket_once(servers: tuple[Server, Server]) -> None:
    base = servers[0].url
    async with httpx.AsyncClient(timeout=10) as http:
        session = await host_session(http, base)
        ticket = await ticket_for(http, base, session)
    url = f"{base.replace('http://', 'ws://')}/v1/rooms/{session['room']['id']}/ws?ticket={ticket}"
    async with ws_connect(url) as ws:
        assert '"snapshot"' in str(await asyncio.wait_for(ws.recv(), 5))
    async with ws_connect(url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_tickets_never_reach_the_log(servers: tuple[Server, Server]) -> None:
    assert redact("GET /v1/rooms/r/events?after=3&ticket=s3cr3t HTTP/1.1") == (
        "GET /v1/rooms/r/events?after=3&ticket=[redacted] HTTP/1.1"
    )
    server = servers[1]
    async with httpx.AsyncClient(timeout=10) as http:
        session = await host_session(http, server.url)
        ticket = await ticket_for(http, server.url, session)
        status, _ = await first_sse_event(
            http, f"{server.url}/v1/rooms/{session['room']['id']}/events?ticket={ticket}"
        )
        assert status == 200
    await wait_for(lambda: "/events?ticket=[redacted]" in server.log.read_text())
    text = server.log.read_text()
    assert ticket not in text
