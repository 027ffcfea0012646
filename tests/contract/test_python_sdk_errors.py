"""The Python SDK's errors are one family: a refused command raises the same class over HTTP and
the WebSocket, an unreachable server a RoundtableError naming the URL, and the bots CLI says so
in one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from typing import TypeVar

import pytest
from roundtable import (
    Conflict,
    GameNotInProgress,
    PhaseClosed,
    RoomSession,
    RoundtableError,
    ServerUnreachable,
)
from roundtable import errors as sdk_errors
from roundtable.contract import api, events

from backend.core.problems import _STATUS_CODES, AppError
from backend.domain.errors import RuleError
from tests.support import ROOT, free_port

T = TypeVar("T")


async def refusal(awaitable: object) -> RoundtableError:
    """Return the RoundtableError `awaitable` raises."""
    with pytest.raises(RoundtableError) as refused:
        await awaitable  # type: ignore[misc]
    return refused.value


def same(http: RoundtableError, ws: RoundtableError) -> tuple[type[RoundtableError], str, int]:
    """Assert both are the same refusal; return its class, code and status."""
    assert (type(ws), ws.code, ws.status) == (type(http), http.code, http.status), (http, ws)
    return type(http), http.code, http.status


async def test_a_refused_command_raises_the_same_class_over_http_and_the_socket(server_url: str) -> None:
    """Before the game and for a phase no longer open: the same class, code and status either way."""
    host = await RoomSession.create(server_url, name="SDK errors", nickname="Ada")
    guests = [
        await RoomSession.join(server_url, nickname=n, room_id=host.room_id) for n in ("Bo", "Cy", "Di")
    ]
    async with host, host.socket() as socket:
        assert isinstance(await anext(socket), events.Snapshot)

        not_yet = same(await refusal(host.vote(None)), await refusal(socket.vote(None)))
        assert not_yet == (GameNotInProgress, "game_not_in_progress", 409)

        await host.start()  # night 1 opens; the vote of round 1 is not open
        late = same(
            await refusal(host.vote(None, round_=1, phase=api.Phase.vote)),
            await refusal(socket.vote(None, round_=1, phase=api.Phase.vote)),
        )
        assert late == (PhaseClosed, "phase_closed", 409)
        assert issubclass(PhaseClosed, Conflict)

        action = {"type": "vote", "target_player_id": None, "round": 1, "phase": "vote"}
        by_action = same(await refusal(host.act(action)), await refusal(socket.act(action)))
        assert by_action == late
    for guest in guests:
        await guest.aclose()


def test_every_code_the_server_answers_with_has_its_status_in_the_sdk() -> None:
    """The SDK tells a socket's error (a code, no status) by the server's own code → status
    table, so each code the server refuses with must be there, with the same status."""
    import backend.app  # noqa: F401 - every router, ruleset and its errors

    def subclasses(cls: type[T]) -> list[type[T]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    refusals: list[type[AppError] | type[RuleError]] = [*subclasses(AppError), *subclasses(RuleError)]
    server = {(c.code, c.status) for c in refusals}
    server |= {(code, status) for status, code in _STATUS_CODES.items()}
    mismatched = {(code, status, sdk_errors.status_of(code)) for code, status in server}
    assert {m for m in mismatched if m[1] != m[2]} == set()
    for code, status in server:
        over_socket = sdk_errors.from_socket_error(code, "")
        over_http = sdk_errors.error_for(status, code, "")
        assert (type(over_socket), over_socket.status) == (type(over_http), status), code


async def test_an_unreachable_server_raises_server_unreachable_naming_the_url(server_url: str) -> None:
    """Refused, over HTTP and the socket, and an unknown host: a RoundtableError with the URL."""
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachable) as refused:
        await RoomSession.create(dead, name="Nobody", nickname="Ada")
    assert isinstance(refused.value, RoundtableError)
    assert refused.value.url == dead
    assert dead in str(refused.value)
    assert "refused" in str(refused.value)

    unknown = "http://no-such-host.invalid:8000"
    with pytest.raises(ServerUnreachable, match="unknown host") as lost:
        await RoomSession.join(unknown, nickname="Ada", code="ABCDEF")
    assert unknown in str(lost.value)

    async with await RoomSession.create(server_url, name="Gone", nickname="Ada") as real:
        elsewhere = RoomSession(dead, real.room, real.player, real.token)
        async with elsewhere:
            with pytest.raises(ServerUnreachable, match=dead):
                await elsewhere.state()
            with pytest.raises(ServerUnreachable, match=dead):
                async with elsewhere.socket():
                    pass


@pytest.mark.slow  # starts the CLI process
def test_the_bots_cli_says_in_one_line_that_the_server_is_unreachable() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "roundtable.cli", "--url", dead, "--count", "5"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert dead in lines[0]
    assert "refused" in lines[0]


async def test_a_proxys_bad_gateway_is_no_answer_from_the_server_not_a_refusal() -> None:
    """A reverse proxy answers 502 (its own HTML page) when the server behind it died with the
    request: the SDK raises ServerUnreachable, which the bots and streams retry (an action under
    its Idempotency-Key), not a RoundtableError of status 502 that ends them."""

    async def bad_gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
        head = f"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {len(page)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + page)
        await writer.drain()
        writer.close()

    proxy = await asyncio.start_server(bad_gateway, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
    async with proxy:
        with pytest.raises(ServerUnreachable) as gone:
            await RoomSession.join(url, nickname="Ada", room_id=uuid.uuid4())
    assert gone.value.url == url
    assert "502" in gone.value.reason
