"""A player's session in one room: the token, typed commands, and event streams that resume by seq."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Annotated, Any, Self, TypeVar

import httpx2
from pydantic import Field, TypeAdapter
from roundtable_client import AsyncClient
from roundtable_client.errors import APIConnectionError, APIStatusError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from roundtable.contract import api, events
from roundtable.errors import (
    Invalid,
    RoomNotFound,
    RoundtableError,
    ServerUnreachable,
    Spectating,
    Unavailable,
    from_problem_body,
    from_socket_error,
    unreachable_reason,
)

T = TypeVar("T")

# Everything a stream yields: the snapshot (a stream opened without a resume point) or an event.
Incoming = events.Snapshot | events.RoomEvent
_INCOMING: TypeAdapter[Incoming] = TypeAdapter(Incoming)
_SOCKET_REPLY: TypeAdapter[events.SocketAck | events.SocketError] = TypeAdapter(
    events.SocketAck | events.SocketError
)

# An action of any ruleset, told apart by `type` (the generated alias is a plain union).
Action = api.CastVoteAction | api.ProposeTeamAction | api.ApproveTeamAction | api.MissionChoiceAction
_ACTION: TypeAdapter[Action] = TypeAdapter(Annotated[Action, Field(discriminator="type")])


def as_action(body: Action | dict[str, Any]) -> Action:
    """Return the action model of a dict such as `{"type": "approve", "choice": "reject"}`."""
    return _ACTION.validate_python(body) if isinstance(body, dict) else body


class StreamGone(RoundtableError):
    """The server will not stream to this player any more (removed from the room, or the room is gone)."""


# A reverse proxy's own answers that the server behind it went away (502: it died with the
# request, say) or did not answer in time (504). Not the server's refusal: like no answer at
# all, they raise ServerUnreachable, which callers retry (an action under its Idempotency-Key).
GATEWAY_ERRORS = (502, 504)


def _gateway(url: str, status: int) -> ServerUnreachable:
    return ServerUnreachable(url, f"the proxy in front of it answered {status}: the server behind it is gone")


async def _call(awaitable: Awaitable[T], url: str) -> T:
    """Run a generated client call to the server at `url`; turn a problem response, or no
    response at all (a proxy's 502 and 504 included), into a typed RoundtableError."""
    try:
        return await awaitable
    except APIStatusError as exc:
        if exc.status_code in GATEWAY_ERRORS:
            raise _gateway(url, exc.status_code) from exc
        raise from_problem_body(exc.status_code, exc.body) from exc
    except APIConnectionError as exc:
        raise ServerUnreachable(url, unreachable_reason(exc)) from exc


class RoomSession:
    """One player, or one spectator, in one room.

    Create or join with `RoomSession.create` / `RoomSession.join` / `RoomSession.quick_join`,
    or watch with `RoomSession.spectate`; the session keeps the bearer token (shown by the
    server only once). A spectator's session reads (`state`, `rounds`, `events`, `socket`)
    and sees only what is public; its commands are refused with `Spectating` (403).

    `events()` iterates the room's events over SSE for as long as you like, reconnecting by
    itself with `Last-Event-ID`, so you see every event you may see exactly once, in order,
    across network errors and server restarts. `socket()` does the same over a WebSocket
    and lets you send commands.
    """

    def __init__(
        self,
        base_url: str,
        room: api.Room,
        player: api.Player | None,
        token: str,
        *,
        spectator: api.Spectator | None = None,
        reconnect_delay: float = 0.25,
        max_reconnect_delay: float = 5.0,
    ) -> None:
        if (player is None) == (spectator is None):
            raise ValueError("a session is a player's or a spectator's: give exactly one")
        self.base_url = base_url.rstrip("/")
        self.room = room
        self.player = player
        """The player of this session; None for a spectator's."""
        self.spectator = spectator
        """The spectator of this session (`spectate`); None for a player's."""
        self.token = token
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.client = AsyncClient(base_url=self.base_url, bearer_auth=token)
        # The newest seq this session has seen on any stream: where the next stream resumes.
        self.last_seq: int | None = None
        # What this player may do now, as the server last said (state, snapshot, options.changed).
        self.options: list[api.Option] = []

    @property
    def room_id(self) -> uuid.UUID:
        return self.room.id

    @property
    def is_spectator(self) -> bool:
        """Whether this session watches (`spectate`) rather than plays."""
        return self.spectator is not None

    @property
    def player_id(self) -> uuid.UUID:
        """This player's id; a spectator has none, and asking raises `Spectating` at once
        (rather than a None that would turn up later as a confusing mismatch)."""
        if self.player is None:
            raise Spectating(403, "spectator", "This session watches the room: it has no player.")
        return self.player.id

    @classmethod
    async def create(
        cls,
        base_url: str,
        *,
        name: str,
        nickname: str,
        ruleset: api.Ruleset | str | None = None,
        settings: api.MafiaSettingsInput | api.MissionsSettingsInput | None = None,
    ) -> RoomSession:
        """Create a room of a ruleset (named, or told by the settings' type; mafia by default) and host it."""
        if ruleset is None:
            missions = isinstance(settings, api.MissionsSettingsInput)
            ruleset = api.Ruleset.missions if missions else api.Ruleset.mafia
        ruleset = api.Ruleset(ruleset)
        body: api.CreateMafiaRoomRequest | api.CreateMissionsRoomRequest
        if ruleset is api.Ruleset.missions:
            if isinstance(settings, api.MafiaSettingsInput):
                raise ValueError("a missions room takes MissionsSettingsInput")
            body = api.CreateMissionsRoomRequest(name=name, nickname=nickname, ruleset="missions")
            if settings is not None:
                body.settings = settings
        else:
            if isinstance(settings, api.MissionsSettingsInput):
                raise ValueError("a mafia room takes MafiaSettingsInput")
            body = api.CreateMafiaRoomRequest(name=name, nickname=nickname, ruleset="mafia")
            if settings is not None:
                body.settings = settings
        async with AsyncClient(base_url=base_url) as anonymous:
            answer = await _call(anonymous.rooms.create_room(body=body), base_url)
        return cls(base_url, answer.room, answer.player, answer.token)

    @classmethod
    async def join(
        cls, base_url: str, *, nickname: str, room_id: uuid.UUID | None = None, code: str | None = None
    ) -> RoomSession:
        """Join a room by its id or its six-character code."""
        async with AsyncClient(base_url=base_url) as anonymous:
            if room_id is None:
                if code is None:
                    raise ValueError("join needs room_id or code")
                page = await _call(anonymous.rooms.list_rooms(code=code.upper()), base_url)
                if not page.items:
                    raise RoomNotFound(404, "room_not_found", f"No open room has the code {code}.")
                room_id = page.items[0].id
            body = api.JoinRoomRequest(nickname=nickname)
            if code is not None:
                body.code = code.upper()
            answer = await _call(anonymous.players.join_room(room_id=room_id, body=body), base_url)
        return cls(base_url, answer.room, answer.player, answer.token)

    @classmethod
    async def quick_join(cls, base_url: str, ruleset: api.Ruleset | str, nickname: str) -> RoomSession:
        """Join the fullest open public lobby of `ruleset`, or a new one the server creates
        with this player as its host (`POST /v1/quick-join`)."""
        body = api.QuickJoinRequest(ruleset=api.Ruleset(ruleset), nickname=nickname)
        async with AsyncClient(base_url=base_url) as anonymous:
            answer = await _call(anonymous.players.quick_join(body=body), base_url)
        return cls(base_url, answer.room, answer.player, answer.token)

    @classmethod
    async def spectate(
        cls,
        base_url: str,
        room_id: uuid.UUID | None = None,
        *,
        code: str | None = None,
        nickname: str | None = None,
    ) -> RoomSession:
        """Watch a room as a spectator: a public room by its id, a private one with its code
        (by the code alone, too). The session reads what every player may see; `me` is None
        in its state and snapshot, and every command is refused with `Spectating`."""
        async with AsyncClient(base_url=base_url) as anonymous:
            if room_id is None:
                if code is None:
                    raise ValueError("spectate needs room_id or code")
                page = await _call(anonymous.rooms.list_rooms(code=code.upper()), base_url)
                if not page.items:
                    raise RoomNotFound(404, "room_not_found", f"No open room has the code {code}.")
                room_id = page.items[0].id
            body = api.WatchRoomRequest()
            if code is not None:
                body.code = code.upper()
            if nickname is not None:
                body.nickname = nickname
            answer = await _call(anonymous.players.watch_room(room_id=room_id, body=body), base_url)
        # The summary hides a private room's code; the spectator was given it, so keep it.
        summary = answer.room.model_dump(exclude={"spectator_count"})
        room = api.Room.model_validate({**summary, "code": answer.room.code or (code or "").upper()})
        return cls(base_url, room, None, answer.token, spectator=answer.spectator)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session's HTTP connections (the token stays valid)."""
        await self.client.aclose()

    # Commands -------------------------------------------------------------------------

    async def state(self) -> api.RoomState:
        """Return this player's view of the room now."""
        state = await _call(self.client.rooms.get_room_state(room_id=self.room_id), self.base_url)
        self.room = state.room
        self.options = list(state.options)
        return state

    async def start(self) -> api.Room:
        """Start the game (host only)."""
        self.room = await _call(self.client.game.start_game(room_id=self.room_id), self.base_url)
        return self.room

    async def advance(self, round_: int | None = None, phase: api.Phase | None = None) -> api.Room:
        """Close the open phase now (host only); with round and phase, only if that phase is still open."""
        if round_ is not None and phase is not None:
            body = api.AdvanceRequest(round=round_, phase=phase)
            self.room = await _call(
                self.client.game.advance_phase(room_id=self.room_id, body=body), self.base_url
            )
        else:
            self.room = await _call(self.client.game.advance_phase(room_id=self.room_id), self.base_url)
        return self.room

    async def act(
        self, action: Action | dict[str, Any], *, idempotency_key: str | None = None
    ) -> api.ActionAccepted:
        """Take an action of the room's ruleset (`POST /actions`), one of `options` made concrete.

        `action` is a generated action model (`api.ProposeTeamAction(...)`, ...) or the same as
        a dict. Every action carries an Idempotency-Key (a fresh one unless given), so the
        client's own retries after a lost answer never count it twice.
        """
        body = as_action(action)
        key = idempotency_key or uuid.uuid4().hex
        return await _call(
            self.client.game.perform_action(room_id=self.room_id, body=body, idempotency_key=key),
            self.base_url,
        )

    async def vote(
        self,
        target: uuid.UUID | None,
        *,
        round_: int | None = None,
        phase: api.Phase | None = None,
        idempotency_key: str | None = None,
    ) -> api.VoteAccepted:
        """Vote for `target` (None abstains) in the open phase, or in that round and phase only.

        Every vote carries an Idempotency-Key (a fresh one unless given), so the client's own
        retries after a lost answer never count a vote twice.
        """
        body = api.VoteRequest(target_player_id=target)
        if round_ is not None:
            body.round = round_
        if phase is not None:
            body.phase = phase
        key = idempotency_key or uuid.uuid4().hex
        return await _call(
            self.client.game.cast_vote(room_id=self.room_id, body=body, idempotency_key=key), self.base_url
        )

    async def chat(self, text: str) -> api.ChatMessageAccepted:
        """Say something; the phase decides who hears it."""
        body = api.ChatMessageRequest(text=text)
        return await _call(
            self.client.realtime.send_chat_message(room_id=self.room_id, body=body), self.base_url
        )

    async def rematch(self) -> api.Room:
        """Start another game in the room once its game is finished (host only); the new
        game's `game.started` comes on the open streams."""
        self.room = await _call(self.client.game.rematch_game(room_id=self.room_id), self.base_url)
        return self.room

    async def rounds(self, game: int | None = None) -> api.RoundList:
        """Return every round's votes and results this caller may see, of the newest game or
        of `game` (1 for the room's first)."""
        if game is None:
            call = self.client.game.list_rounds(room_id=self.room_id)
        else:
            call = self.client.game.list_rounds(room_id=self.room_id, game=game)
        return await _call(call, self.base_url)

    async def leave(self) -> None:
        """Leave the room; the token stops working."""
        await _call(
            self.client.players.remove_player(room_id=self.room_id, player_id=self.player_id), self.base_url
        )

    # Streams --------------------------------------------------------------------------

    async def events(self, after: int | None = None) -> AsyncGenerator[Incoming, None]:
        """Yield the room's events over SSE, forever, resuming by seq after any disconnect.

        Without `after` (and before this session saw any event) the first item is the
        snapshot of the caller's state. Stop by breaking out of the loop. Raises a
        RoundtableError when the server refuses the stream for good (bad token, removed).
        """
        if after is not None:
            self.last_seq = after
        delay = self.reconnect_delay
        url = f"{self.base_url}/v1/rooms/{self.room_id}/events"
        timeout = httpx2.Timeout(10.0, read=60.0)  # heartbeats come every 15 s
        async with httpx2.AsyncClient(timeout=timeout) as http:
            while True:
                headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
                if self.last_seq is not None:
                    headers["Last-Event-ID"] = str(self.last_seq)
                try:
                    async with http.stream("GET", url, headers=headers) as response:
                        if response.status_code in GATEWAY_ERRORS:
                            raise _gateway(self.base_url, response.status_code)
                        if response.status_code != 200:
                            body = json.loads(await response.aread() or b"{}")
                            raise _stream_refused(response.status_code, body)
                        delay = self.reconnect_delay
                        async for item in _parse_sse(response.aiter_lines()):
                            self.saw(item)
                            yield item
                except (httpx2.TransportError, APIConnectionError, ServerUnreachable):
                    pass  # the server went away or restarts: resume where we stopped
                except RoundtableError as refused:
                    if refused.status != 503:
                        raise
                await asyncio.sleep(jittered(delay))
                delay = min(self.max_reconnect_delay, delay * 2)

    def socket(self, after: int | None = None) -> AbstractAsyncContextManager[SocketSession]:
        """Open a WebSocket to the room: iterate events, send `action` / `vote` / `chat` / `ping` commands."""
        return SocketSession(self, after)

    def saw(self, item: Incoming) -> None:
        """Note what a streamed item tells the session: where to resume, the room, and this
        player's options (a new game, a rematch's included, starts with none)."""
        if isinstance(item, events.Snapshot):
            self.last_seq = item.data.last_seq
            self.options = list(item.data.options)
            self.room = item.data.room
        else:
            self.last_seq = item.seq
            if isinstance(item, events.GameStartedEvent | events.RoomUpdatedEvent):
                self.room = item.data.room
            if isinstance(item, events.GameStartedEvent):
                self.options = []
            elif (
                isinstance(item, events.OptionsChangedEvent)
                and self.player is not None
                and item.data.player_id == self.player.id
            ):
                self.options = list(item.data.options)


def jittered(delay: float) -> float:
    """Return between half of `delay` and all of it, at random: the clients of a server that
    went away do not all come back at the same instant."""
    return random.uniform(delay / 2, delay)  # noqa: S311 - spreading retries, not a secret


def _stream_refused(status: int, body: Any) -> RoundtableError:
    error = from_problem_body(status, body)
    if status in (401, 403, 404):
        return StreamGone(error.status, error.code, error.detail, error.problem)
    return error


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[Incoming]:
    """Turn SSE lines into typed messages (comments, `retry:` and unknown fields skipped)."""
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield _INCOMING.validate_json("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


class SocketSession:
    """A WebSocket to the room that resumes by seq; commands are answered by ack or error."""

    def __init__(self, session: RoomSession, after: int | None) -> None:
        self.session = session
        if after is not None:
            session.last_seq = after
        self._ws: ClientConnection | None = None
        self._replies: dict[str, asyncio.Future[events.SocketAck]] = {}
        self._events: asyncio.Queue[Incoming | ConnectionClosed] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SocketSession:
        await self._connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()

    async def _connect(self) -> None:
        s = self.session
        url = (
            s.base_url.replace("http://", "ws://").replace("https://", "wss://") + f"/v1/rooms/{s.room_id}/ws"
        )
        if s.last_seq is not None:
            url += f"?after={s.last_seq}"
        try:
            self._ws = await ws_connect(url, additional_headers={"Authorization": f"Bearer {s.token}"})
        except InvalidStatus as exc:
            if exc.response.status_code in GATEWAY_ERRORS:
                raise _gateway(s.base_url, exc.response.status_code) from exc
            raise _stream_refused(exc.response.status_code, {}) from exc
        except (OSError, TimeoutError) as exc:
            raise ServerUnreachable(s.base_url, unreachable_reason(exc)) from exc
        self._reader = asyncio.create_task(self._read(self._ws))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") in ("ack", "error"):
                    reply = _SOCKET_REPLY.validate_python(message)
                    waiter = self._replies.pop(str(reply.request_id), None)
                    if waiter is not None and not waiter.done():
                        if isinstance(reply, events.SocketAck):
                            waiter.set_result(reply)
                        else:
                            # The class, code and status a problem response would have raised.
                            waiter.set_exception(from_socket_error(reply.code, reply.detail))
                    continue
                item = _INCOMING.validate_python(message)
                self.session.saw(item)
                await self._events.put(item)
        except ConnectionClosed as closed:
            await self._events.put(closed)

    def __aiter__(self) -> SocketSession:
        return self

    async def __anext__(self) -> Incoming:
        """Return the next event, reconnecting by seq when the socket closed."""
        while True:
            item = await self._events.get()
            if not isinstance(item, ConnectionClosed):
                return item
            code = item.rcvd.code if item.rcvd is not None else 1006
            if code in (1008, 4401, 4403, 4404, 4409):
                status = 404 if code == 4404 else 403
                raise StreamGone(status, f"closed_{code}", "The server ended this stream for good.")
            if code in (1003, 4422):  # refused as not valid: the same again would be refused again
                raise Invalid(422, "validation_failed", item.rcvd.reason if item.rcvd else "")
            await self._reconnect()

    async def _reconnect(self) -> None:
        """Open the socket again after it closed, backing off while the server (or the proxy
        before it) cannot take it yet."""
        delay = self.session.reconnect_delay
        while True:
            await asyncio.sleep(jittered(delay))
            try:
                await self._connect()
                return
            except (ServerUnreachable, Unavailable):
                delay = min(self.session.max_reconnect_delay, delay * 2)

    async def command(self, message: dict[str, Any]) -> events.SocketAck:
        """Send a command and wait (at most 10 s) for its ack; an error reply raises the
        RoundtableError its HTTP request would have (a late vote: PhaseClosed, 409)."""
        assert self._ws is not None
        request_id = str(message.setdefault("request_id", uuid.uuid4().hex))
        waiter: asyncio.Future[events.SocketAck] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = waiter
        url = self.session.base_url
        try:
            await self._ws.send(json.dumps(message))
            async with asyncio.timeout(10):
                return await waiter
        except ConnectionClosed as exc:
            raise ServerUnreachable(url, "the socket closed") from exc
        except TimeoutError as exc:
            raise ServerUnreachable(url, "no answer to the command in 10 s") from exc
        finally:
            self._replies.pop(request_id, None)

    async def act(self, action: Action | dict[str, Any]) -> events.SocketAck:
        """Take an action over the socket (the `action` command); the ack carries the seq it appended."""
        body = as_action(action)
        return await self.command({"type": "action", "action": body.model_dump(mode="json")})

    async def vote(
        self, target: uuid.UUID | None, *, round_: int | None = None, phase: api.Phase | None = None
    ) -> events.SocketAck:
        """Vote over the socket; the ack carries the seq of the vote.cast event."""
        message: dict[str, Any] = {"type": "vote", "target_player_id": str(target) if target else None}
        if round_ is not None:
            message["round"] = round_
        if phase is not None:
            message["phase"] = phase.value
        return await self.command(message)

    async def chat(self, text: str) -> events.SocketAck:
        """Say something over the socket."""
        return await self.command({"type": "chat", "text": text})

    async def ping(self) -> events.SocketAck:
        """Check the socket answers."""
        return await self.command({"type": "ping"})
