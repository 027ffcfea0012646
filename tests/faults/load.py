"""Clients that keep reading and writing through a fault, and what each of them was answered.

Every request is recorded with its answer: a success, a 503 `database_unavailable` problem
with `Retry-After` (the only failure allowed while the database cannot serve), or anything
else, which the tests refuse (a 500, another problem, or no answer at all). Commands carry
unique texts and names, so the database can be asked afterwards which of them were written.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import check_envelope, sse_events

PROBLEM = "application/problem+json"
TIMEOUT = 30.0  # longer than any fault the tests cause: a late answer is an answer


@dataclass
class Sent:
    """One command and how it was answered: `ok` (written), `unavailable` (503, not written)."""

    kind: str
    key: str  # the chat text, room name or nickname that finds it in the database
    outcome: str
    seconds: float


@dataclass
class SseClient:
    """One player's SSE stream across reconnects: every seq it received, in order."""

    name: str
    token: str
    resume_every: float | None  # reconnect on purpose this often (a resuming client)
    seqs: list[int] = field(default_factory=list)
    snapshot_seq: int | None = None
    opened: int = 0

    @property
    def last(self) -> int | None:
        return self.seqs[-1] if self.seqs else self.snapshot_seq


@dataclass
class Night:
    """A mafia game held at its first night, where one mafia player keeps changing their kill
    vote: every change is a game command (lock, rules, events, the vote row) with its own
    Idempotency-Key, which the database holds if and only if the command committed."""

    room_id: str
    voter_token: str
    targets: list[str]


@dataclass
class Load:
    """The clients of one room (and of new rooms and joins), run until `stop()`."""

    base: str
    room_id: str
    host_token: str
    chat_tokens: list[str]
    socket_tokens: list[str]
    sse: list[SseClient]
    night: Night
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)  # answers no client may get
    sent: list[Sent] = field(default_factory=list)
    socket_closes: Counter[int] = field(default_factory=Counter)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Streams end on this as well as on cancellation: Python 3.11's asyncio.timeout can swallow
    # a cancellation that lands as its deadline passes, and the loop would then go on for ever.
    _closed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    # The tests of a module share one database: each load's keys are its own, so a key another
    # test wrote is never mistaken for one of this load's.
    _tag: str = field(default_factory=lambda: secrets.token_hex(3))

    # What counts

    def successes(self, kind: str) -> int:
        return sum(n for (k, status), n in self.statuses.items() if k == kind and status < 300)

    def unavailable(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status == 503)

    def _answer(self, kind: str, response: httpx.Response, ok: tuple[int, ...]) -> str:
        """Record an HTTP answer; return 'ok', 'unavailable' or 'refused'."""
        self.statuses[(kind, response.status_code)] += 1
        if response.status_code in ok:
            return "ok"
        if (
            response.status_code == 503
            and response.headers.get("content-type") == PROBLEM
            and response.json().get("code") == "database_unavailable"
            and response.headers.get("retry-after", "").isdigit()
            and int(response.headers["retry-after"]) >= 1
        ):
            return "unavailable"
        self.refused.append(f"{kind}: {response.status_code} {response.headers} {response.text[:300]}")
        return "refused"

    def _no_answer(self, kind: str, exc: Exception) -> None:
        self.refused.append(f"{kind}: no answer ({type(exc).__name__}: {exc})")

    # Running

    def start(self, http: httpx.AsyncClient) -> None:
        loops = [self._poll_state(http) for _ in range(4)]
        loops += [self._chat(http, token) for token in self.chat_tokens]
        loops += [self._create(http), self._join(http), self._vote(http)]
        loops += [self._socket(token) for token in self.socket_tokens]
        loops += [self._stream(http, client) for client in self.sse]
        self._tasks = [asyncio.create_task(loop) for loop in loops]

    async def stop(self) -> None:
        """Stop sending commands, and wait for every one in flight to be answered; the
        streams go on (see `close_streams`)."""
        self._stopping.set()
        await asyncio.gather(*self._tasks[: len(self._tasks) - len(self.sse)])

    async def close_streams(self) -> None:
        """Stop every client, commands included (a test that failed half-way stops here)."""
        self._stopping.set()
        self._closed.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _pause(self, response: httpx.Response | None = None) -> None:
        """Wait a little between requests: Retry-After's seconds after a 503, else 10 ms."""
        delay = 0.01
        if response is not None and response.status_code == 503:
            delay = float(response.headers.get("retry-after", "1"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _request(
        self, http: httpx.AsyncClient, kind: str, ok: tuple[int, ...], method: str, url: str, **kw: Any
    ) -> tuple[str, httpx.Response | None, float]:
        began = time.monotonic()
        try:
            response = await http.request(method, url, timeout=TIMEOUT, **kw)
        except httpx.HTTPError as exc:
            self._no_answer(kind, exc)
            return "refused", None, time.monotonic() - began
        return self._answer(kind, response, ok), response, time.monotonic() - began

    async def _poll_state(self, http: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {self.host_token}"}
        while not self._stopping.is_set():
            _, response, _ = await self._request(
                http, "state", (200,), "GET", f"{self.base}/v1/rooms/{self.room_id}/state", headers=headers
            )
            await self._pause(response)

    async def _chat(self, http: httpx.AsyncClient, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{self.base}/v1/rooms/{self.room_id}/messages"
        while not self._stopping.is_set():
            text = f"chat {self._tag}-{next(self._numbers)}"
            outcome, response, took = await self._request(
                http, "chat", (201,), "POST", url, headers=headers, json={"text": text}
            )
            self.sent.append(Sent("chat", text, outcome, took))
            await self._pause(response)

    async def _vote(self, http: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {self.night.voter_token}"}
        url = f"{self.base}/v1/rooms/{self.night.room_id}/votes"
        targets = itertools.cycle(self.night.targets)
        while not self._stopping.is_set():
            key = f"vote-{self._tag}-{next(self._numbers)}"
            body = {"target_player_id": next(targets), "round": 1, "phase": "night"}
            outcome, response, took = await self._request(
                http, "vote", (201,), "POST", url, headers={**headers, "Idempotency-Key": key}, json=body
            )
            self.sent.append(Sent("vote", key, outcome, took))
            await self._pause(response)

    async def _create(self, http: httpx.AsyncClient) -> None:
        while not self._stopping.is_set():
            name = f"room {self._tag}-{next(self._numbers)}"
            body = {"name": name, "nickname": "Host", "ruleset": "mafia"}
            outcome, response, took = await self._request(
                http, "create", (201,), "POST", f"{self.base}/v1/rooms", json=body
            )
            self.sent.append(Sent("create", name, outcome, took))
            await self._pause(response)

    async def _join(self, http: httpx.AsyncClient) -> None:
        room: str | None = None
        while not self._stopping.is_set():
            if room is None:  # a room of its own to fill, made when the database answers
                name = f"joins {self._tag}-{next(self._numbers)}"
                body = {"name": name, "nickname": "Host", "ruleset": "mafia", "settings": {"max_players": 20}}
                outcome, made, took = await self._request(
                    http, "create", (201,), "POST", f"{self.base}/v1/rooms", json=body
                )
                self.sent.append(Sent("create", name, outcome, took))
                if made is not None and made.status_code == 201:
                    room = made.json()["room"]["id"]
                await self._pause(made)
                continue
            nickname = f"Joiner {self._tag}-{next(self._numbers)}"
            outcome, response, took = await self._request(
                http,
                "join",
                (201, 409),
                "POST",
                f"{self.base}/v1/rooms/{room}/players",
                json={"nickname": nickname},
            )
            if response is not None and response.status_code == 409:
                assert response.json()["code"] == "room_full", response.text
                room = None
                continue
            self.sent.append(Sent("join", nickname, outcome, took))
            await self._pause(response)

    async def _socket(self, token: str) -> None:
        """A player's WebSocket sending chat commands, one at a time once the socket is served
        (its snapshot came), each answered by an `ack` or an `error` `database_unavailable`;
        reconnected when the server closes it (1013 database_unavailable: it could not open
        the socket's stream, the only close expected here)."""
        url = f"{self.base.replace('http://', 'ws://')}/v1/rooms/{self.room_id}/ws"
        while not self._stopping.is_set():
            try:
                async with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                    first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    assert first["type"] == "snapshot", first
                    await self._commands(ws)
            except ConnectionClosed as closed:
                code, reason = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (1006, "")
                self.socket_closes[code] += 1
                if (code, reason) != (1013, "database_unavailable"):
                    self.refused.append(f"socket closed {code} {reason}")
                await self._pause()
            except (InvalidStatus, OSError) as exc:
                self._no_answer("socket", exc)
                await self._pause()

    async def _commands(self, ws: ClientConnection) -> None:
        while not self._stopping.is_set():
            number = next(self._numbers)
            text = f"socket chat {self._tag}-{number}"
            began = time.monotonic()
            await ws.send(json.dumps({"type": "chat", "request_id": f"r{number}", "text": text}))
            try:
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    if message.get("request_id") == f"r{number}":
                        break
            except (ConnectionClosed, TimeoutError) as exc:
                # A command sent is answered, whatever the database does: never left hanging.
                self.sent.append(Sent("chat", text, "unanswered", time.monotonic() - began))
                self._no_answer("socket command", exc)
                raise
            took = time.monotonic() - began
            if message["type"] == "ack":
                self.statuses[("socket", 201)] += 1
                self.sent.append(Sent("chat", text, "ok", took))
            elif message["type"] == "error" and message["code"] == "database_unavailable":
                self.statuses[("socket", 503)] += 1
                self.sent.append(Sent("chat", text, "unavailable", took))
            else:
                self.refused.append(f"socket: {message}")
            await self._pause()

    async def _stream(self, http: httpx.AsyncClient, client: SseClient) -> None:
        """Keep `client`'s SSE stream open, resuming from the last event it has whenever the
        stream ends (or, for a resuming client, every `resume_every` seconds), until closed."""
        while not self._closed.is_set():
            headers = {"Authorization": f"Bearer {client.token}"}
            if client.last is not None:
                headers["Last-Event-ID"] = str(client.last)
            url = f"{self.base}/v1/rooms/{self.room_id}/events"
            try:
                async with http.stream("GET", url, headers=headers, timeout=TIMEOUT) as response:
                    if response.status_code != 200:
                        await response.aread()
                        self._answer("stream", response, ())
                        await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                        continue
                    self.statuses[("stream", 200)] += 1
                    client.opened += 1
                    await self._read(response, client)
            except httpx.HTTPError as exc:
                self._no_answer(f"stream {client.name}", exc)
                await asyncio.sleep(0.1)

    async def _read(self, response: httpx.Response, client: SseClient) -> None:
        # A resuming client leaves at the first event past its deadline, or at the deadline if
        # none comes. The event check is what makes it reconnect: the timeout alone once failed
        # to (its cancellation of a read in the HTTP client was lost, and the client kept one
        # stream for the whole test).
        leave_at = None if client.resume_every is None else time.monotonic() + client.resume_every
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(client.resume_every):
                async for event in sse_events(response):
                    payload = check_envelope(event)
                    if payload["type"] == "snapshot":
                        assert client.last is None, f"{client.name}: a snapshot on a resumed stream"
                        client.snapshot_seq = payload["data"]["last_seq"]
                    else:
                        client.seqs.append(payload["seq"])
                    if leave_at is not None and time.monotonic() >= leave_at:
                        break
        # The server ended the stream (or it is time to reconnect): resume after the last seq.


async def committed(database_url: str) -> dict[str, set[str]]:
    """The chat texts, room names, nicknames and vote keys the database holds, by kind."""
    conn = await asyncpg.connect(database_url)
    try:
        texts = {
            r[0]
            for r in await conn.fetch("SELECT data->>'text' FROM room_events WHERE type = 'chat.message'")
        }
        names = {r[0] for r in await conn.fetch("SELECT name FROM rooms")}
        nicknames = {r[0] for r in await conn.fetch("SELECT nickname FROM players")}
        votes = {r[0] for r in await conn.fetch("SELECT key FROM idempotency_keys")}
        return {"chat": texts, "create": names, "join": nicknames, "vote": votes}
    finally:
        await conn.close()


async def room_last_seq(database_url: str, room_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        seq: int = await conn.fetchval("SELECT last_seq FROM rooms WHERE id = $1::uuid", room_id)
        return seq
    finally:
        await conn.close()
