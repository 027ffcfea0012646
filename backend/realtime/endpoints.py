"""The room's streams (SSE, WebSocket) and chat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect, status
from pydantic import MISSING, BaseModel, TypeAdapter, ValidationError
from sse_starlette import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocketState

from backend.api_deps import BearerToken, RealtimeDep, StreamActor, stream_caller
from backend.contract import api, events
from backend.core.limits import json_too_deep, too_deep_detail
from backend.core.problems import (
    AppError,
    DatabaseUnavailable,
    RoomNotFound,
    ServerBusy,
    SpectatorRefused,
    TooManyStreams,
    Unauthorized,
    database_down,
)
from backend.core.server import DetachableCycle
from backend.domain.errors import RuleError
from backend.game import service as game_service
from backend.game.endpoints import vote_action
from backend.realtime import tickets
from backend.realtime.hub import HEARTBEAT, REMOVED, SHUTDOWN, SLOW, Closed, Outgoing, Sink
from backend.realtime.sinks import sse_sink, ws_sink
from backend.realtime.streams import Realtime, Stream
from backend.rooms import service
from backend.rooms.service import Actor

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/rooms")

SOCKET_COMMAND: TypeAdapter[events.SocketCommand] = TypeAdapter(events.SocketCommand)
REQUEST_ID: TypeAdapter[str] = TypeAdapter(events.RequestId)

# Bad input: a binary frame (commands are text); a query or room id not valid (handshake).
WS_BINARY, WS_INVALID = 1003, 4422
# The largest seq there can be (a PostgreSQL bigint): a resume point past it is not valid.
SEQ_MAX = 2**63 - 1

# WebSocket close codes (listed in asyncapi/asyncapi.yaml).
WS_DONE, WS_GOING_AWAY, WS_ORIGIN, WS_TOO_BIG, WS_INTERNAL = 1000, 1001, 1008, 1009, 1011
WS_SLOW = WS_TRY_LATER = 1013
WS_UNAUTHORIZED, WS_FORBIDDEN, WS_NOT_FOUND, WS_REMOVED = 4401, 4403, 4404, 4409
WS_TOO_MANY_STREAMS = 4429

# Replayed events are written in chunks of this many frames.
HISTORY_FRAMES_PER_WRITE = 64


def snapshot_json(room_id: uuid.UUID, state: api.RoomState) -> str:
    """Return the snapshot message for a state."""
    return events.Snapshot(type="snapshot", room_id=room_id, data=state).model_dump_json()


async def _no_body() -> AsyncIterator[bytes]:
    """The body EventSourceResponse is built with; HubEventSourceResponse writes its own."""
    return
    yield b""  # pragma: no cover


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _sse_frame(item: object) -> bytes:
    if isinstance(item, Outgoing):
        return item.sse_frame()
    return b": ping\n\n" if item is HEARTBEAT else b""


def _body(chunk: bytes) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": True}


class HubEventSourceResponse(EventSourceResponse):
    """A room's SSE stream, written by one task straight from its hub connection.

    sse-starlette's EventSourceResponse headers, HEAD and WebSocket handling are kept; its
    streaming part runs a task group of several tasks per response (the body iterator, a
    disconnect listener, a shutdown listener) and a cancel scope around every send. With
    thousands of streams that is most of a stream's memory and much of a delivery's time.
    Here the writer is one task of its own (history, then batches from the connection's
    queue), resumed on every delivery through a stack of a few frames rather than the
    request's ~25 middleware and routing frames; the request's task waits for the client to
    go away; one task per process hears the shutdown (see Realtime).

    Ends at once, a blocked send included, when the client disconnects, when the connection
    is aborted (slow consumer, shutdown): the writer is cancelled, as sse-starlette's task
    group would cancel it.
    """

    def __init__(self, stream: Stream, retry_ms: int, headers: dict[str, str]) -> None:
        # ping=0: the hub sends heartbeats to idle streams, with one timer for all.
        super().__init__(_no_body(), ping=0, sep="\n", headers=headers)
        self.stream = stream
        self.retry_ms = retry_ms

    detached = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._respond(scope, receive, send)
        finally:
            if not self.detached:  # else the stream gives its slot back when it ends
                self.stream.release()

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"].upper() == "HEAD":
            await super().__call__(scope, receive, send)
            return
        cycle = getattr(receive, "__self__", None)
        if isinstance(cycle, DetachableCycle):
            await self._open_detached(cycle, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        aborted = self.stream.conn.aborted
        writer = asyncio.ensure_future(self._write(receive, send))
        listening = True

        def writer_done(_: object) -> None:
            # Runs as a loop callback; wakes this task from its wait for a disconnect.
            if listening:
                task.cancel()

        def abort(_: object) -> None:
            writer.cancel()

        writer.add_done_callback(writer_done)
        aborted.add_done_callback(abort)
        try:
            await _until_disconnect(receive)
        except asyncio.CancelledError:
            # Woken because the writer finished; any other cancellation goes on.
            if not writer.done() or task.uncancel() > 0:
                raise
        finally:
            listening = False
            aborted.remove_done_callback(abort)
            writer.remove_done_callback(writer_done)
            if not writer.done():
                writer.cancel()  # the client went away
                await asyncio.wait({writer})
        if not writer.cancelled() and (error := writer.exception()) is not None:
            raise error

    async def _write(self, receive: Receive, send: Send) -> None:
        stream = self.stream
        start: Message = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        started = False

        async def send_body(chunk: bytes) -> None:
            # The response starts with the history's first chunk, once the database has
            # answered: a database that cannot serve the stream's opening is a 503 problem
            # (raised from here, rendered by the app's handlers), not a 200 that breaks off.
            nonlocal started
            if not started:
                started = True
                await send(start)
            await send(_body(chunk))

        try:
            async with stream:
                if stream.rt.exiting:
                    # Opened as the server shuts down: an empty stream, ended properly.
                    stream.conn.close(SHUTDOWN)
                    await send_body(f"retry: {self.retry_ms}\n\n".encode())
                else:
                    await self._write_history(send_body)
                conn = stream.conn
                # From now on the fan-out writes to this socket itself while this task waits.
                conn.sink = sse_sink(receive)
                try:
                    while True:
                        try:
                            batch = await conn.next_batch()
                        except Closed:
                            break  # lifetime over, player removed, shutdown: the client resumes by seq
                        frames = b"".join([_sse_frame(item) for item in batch])
                        if frames:
                            await send(_body(frames))
                finally:
                    conn.sink = None
        except Exception as exc:
            if not started or not database_down(exc):
                raise
            # The replay broke off with the database gone: end the stream as any other end,
            # the client resumes after the last event it has.
            log.warning("stream ended, database unavailable: %s", type(exc).__name__)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _open_detached(self, cycle: DetachableCycle, receive: Receive, send: Send) -> None:
        """Write the history as the request's response, then leave the live part to a
        `DetachedSse` and return: the request's task and its stack of frames end here."""
        stream = self.stream
        started = False

        async def send_body(chunk: bytes) -> None:
            # As in _write: the response starts once the database has answered.
            nonlocal started
            if not started:
                started = True
                await send(
                    {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
                )
            await send(_body(chunk))

        await stream.__aenter__()
        try:
            if stream.rt.exiting:
                # Opened as the server shuts down: an empty stream, ended properly.
                stream.conn.close(SHUTDOWN)
                await send_body(f"retry: {self.retry_ms}\n\n".encode())
            else:
                await self._write_history(send_body)
        except Exception as exc:
            stream.end()
            if not started or not database_down(exc):
                raise
            log.warning("stream ended, database unavailable: %s", type(exc).__name__)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        except BaseException:
            stream.end()
            raise
        if cycle.disconnected:  # gone while the history was written
            stream.end()
            return
        self.detached = True
        DetachedSse(stream, cycle, sse_sink(receive)).start()

    async def _write_history(self, send_body: Callable[[bytes], Awaitable[None]]) -> None:
        # Its own frame: the snapshot is not kept alive for the stream's whole life.
        stream = self.stream
        frames = [f"retry: {self.retry_ms}\n\n".encode()]
        async for item in stream.history():
            if isinstance(item, Outgoing):
                frames.append(item.sse_frame())
            else:
                body = snapshot_json(stream.actor.room_id, item)
                frames.append(f"id: {item.last_seq}\nevent: snapshot\ndata: {body}\n\n".encode())
            if len(frames) >= HISTORY_FRAMES_PER_WRITE:
                await send_body(b"".join(frames))
                frames = []
        if frames:
            await send_body(b"".join(frames))


class DetachedSse:
    """The live part of an SSE stream whose response was detached from its request (see
    DetachableCycle in backend/core/server.py): what a stream costs while it waits is its
    connection, its uvicorn protocol and this, without a task.

    The fan-out writes to the socket itself while nothing is queued (`Connection.park`); when
    something is (a busy socket, a heartbeat, the stream's end), a task is started that writes
    it through the cycle's own `send` (with its flow control) and ends. The stream ends as the
    writer task of HubEventSourceResponse would end it: after what is queued with the
    terminating chunk (lifetime over, player removed, shutdown), at once with the connection
    closed (slow consumer, a broken socket), or when the client goes away.
    """

    __slots__ = ("conn", "cycle", "stream", "task")

    def __init__(self, stream: Stream, cycle: DetachableCycle, sink: Sink | None) -> None:
        self.stream, self.cycle, self.conn = stream, cycle, stream.conn
        self.conn.sink = sink
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Hand the stream over: from now on it lives on callbacks."""
        self.cycle.detach(self._lost)
        self.conn.aborted.add_done_callback(self._aborted)
        self.conn.park(self._woken)

    def _woken(self, _: object) -> None:
        if self.task is None and not self.conn.aborted.done():
            self.task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        conn, cycle = self.conn, self.cycle
        try:
            while conn.has_work():
                try:
                    batch = conn.take_batch()
                except Closed:
                    # Lifetime over, player removed, shutdown: the client resumes by seq.
                    self._end()
                    await cycle.send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                frames = b"".join([_sse_frame(item) for item in batch])
                if frames:
                    await cycle.send({"type": "http.response.body", "body": frames, "more_body": True})
        except Exception:
            log.exception("writing to an sse stream failed; closing it")
            self._end()
            cycle.transport.close()
            return
        self.task = None
        conn.park(self._woken)

    def _end(self) -> None:
        self.conn.sink = None
        self.cycle.forget()
        self.conn.aborted.remove_done_callback(self._aborted)
        self.stream.end()

    def _lost(self) -> None:
        # The client went away.
        if self.task is not None:
            self.task.cancel()
        self._end()

    def _aborted(self, _: object) -> None:
        # Slow consumer, broken socket: what is queued is dropped, the connection closed.
        if self.task is not None:
            self.task.cancel()
        self._end()
        if not self.cycle.transport.is_closing():
            self.cycle.transport.close()


@router.get("/{room_id}/events")
async def stream_room_events(
    room_id: uuid.UUID,
    actor: StreamActor,
    realtime: RealtimeDep,
    after: Annotated[int | None, Query(ge=0, le=SEQ_MAX)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,18}$")] = None,
) -> HubEventSourceResponse:
    """Stream the room's events as Server-Sent Events."""
    resume = after if after is not None else (int(last_event_id) if last_event_id is not None else None)
    return HubEventSourceResponse(
        await realtime.open_stream(actor, "sse", resume),
        realtime.settings.sse_retry_ms,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def chat(
    realtime: Realtime, room_id: uuid.UUID, caller: Actor | str, body: api.ChatMessageRequest
) -> api.ChatMessageAccepted:
    """Append a chat message for `caller`: an actor already known (a socket's), or a bearer
    token, checked as part of the command (see `service.send_chat`)."""
    accepted, committed = await service.send_chat(
        realtime.db, realtime.appends, room_id, caller, body, realtime.speakers, realtime.limits
    )
    realtime.committed(committed)
    return accepted


async def _act(realtime: Realtime, actor: Actor, action: BaseModel) -> int:
    """Take an action over the WebSocket: the same command path as `POST /actions`."""
    # The same allowance as the HTTP commands (see api_deps.CommandActor).
    await realtime.limits.check(realtime.limits.commands, actor.player_id)
    async with realtime.db.transaction() as session:
        answer = await game_service.perform_action(session, actor.room_id, actor, action, None)
    seq: int = answer.body["seq"]
    return seq


def _vote(command: events.VoteCommand) -> api.CastVoteAction:
    body = api.VoteRequest(target_player_id=command.target_player_id)
    if command.round is not MISSING:
        body.round = command.round
    if command.phase is not MISSING:
        body.phase = command.phase
    return vote_action(body)


@router.post(
    "/{room_id}/messages", status_code=status.HTTP_201_CREATED, response_model=api.ChatMessageAccepted
)
async def send_chat_message(
    room_id: uuid.UUID, body: api.ChatMessageRequest, token: BearerToken, realtime: RealtimeDep
) -> api.ChatMessageAccepted:
    """Say something in the room."""
    return await chat(realtime, room_id, token, body)


@router.post(
    "/{room_id}/stream-tickets", status_code=status.HTTP_201_CREATED, response_model=api.StreamTicket
)
async def create_stream_ticket(
    room_id: uuid.UUID, token: BearerToken, realtime: RealtimeDep
) -> api.StreamTicket:
    """A single-use ticket to open one event stream (see backend/realtime/tickets.py)."""
    async with realtime.db.driver() as conn:
        actor = await service.authenticate(conn, token, room_id)
        return await tickets.issue(conn, actor, realtime.settings.stream_ticket_seconds)


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """Return whether the handshake's Origin may open a socket: none (not a browser), same host, or listed."""
    origin = websocket.headers.get("origin")
    if origin is None or "*" in allowed or origin in allowed:
        return True
    host = websocket.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def _close_for(exc: Exception) -> tuple[int, str]:
    """Return the close code and reason for an error that ends a socket."""
    if isinstance(exc, WebSocketDisconnect):
        return WS_DONE, ""  # the client went away: nobody to tell
    if isinstance(exc, Unauthorized):
        return WS_UNAUTHORIZED, exc.code
    if isinstance(exc, RoomNotFound):
        return WS_NOT_FOUND, exc.code
    if isinstance(exc, TooManyStreams):
        return WS_TOO_MANY_STREAMS, exc.code
    if isinstance(exc, ServerBusy):
        return WS_TRY_LATER, exc.code
    if database_down(exc):
        log.warning("socket closed, database unavailable: %s", type(exc).__name__)
        return WS_TRY_LATER, DatabaseUnavailable.code
    if isinstance(exc, AppError | RuleError):
        return WS_FORBIDDEN, exc.code
    log.error("socket closed on an unexpected error", exc_info=exc)
    return WS_INTERNAL, "internal_error"


async def refuse_handshake(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept the handshake, then close with `code`: a close code (unlike an HTTP status
    refusing the handshake) is what a browser's WebSocket lets the page read."""
    with contextlib.suppress(Exception):  # the client may be gone already: nobody to tell
        await websocket.accept()
        await websocket.close(code=code, reason=reason)


async def on_socket_validation(websocket: WebSocket, exc: Exception) -> None:
    """A socket's room id or query not valid (`after` past a seq, not a number): close 4422,
    unless its origin is refused, which is answered first, as in `room_socket`."""
    realtime: Realtime = websocket.app.state.realtime
    if not origin_allowed(websocket, realtime.settings.allowed_origins):
        await refuse_handshake(websocket, WS_ORIGIN, "origin not allowed")
        return
    await refuse_handshake(websocket, WS_INVALID, "validation_failed")


@router.websocket("/{room_id}/ws")
async def room_socket(
    websocket: WebSocket,
    room_id: uuid.UUID,
    after: Annotated[int | None, Query(ge=0, le=SEQ_MAX)] = None,
    ticket: Annotated[str | None, Query()] = None,
    access_token: Annotated[str | None, Query()] = None,
) -> None:
    """The room's events, and commands, over a WebSocket."""
    realtime: Realtime = websocket.app.state.realtime
    if not origin_allowed(websocket, realtime.settings.websocket_origins):
        await refuse_handshake(websocket, WS_ORIGIN, "origin not allowed")
        return
    header = websocket.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    await websocket.accept()
    # Once accepted, every error ends in a close code (an HTTP problem can no longer be sent).
    reason = ""
    try:
        actor = await stream_caller(realtime.db, room_id, token, ticket, access_token)
        stream = await realtime.open_stream(actor, "ws", after)
        try:
            code = await _serve_socket(websocket, realtime, stream)
        finally:
            stream.release()
    except Exception as exc:
        code, reason = _close_for(exc)
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code=code, reason=reason)


async def _serve_socket(websocket: WebSocket, realtime: Realtime, stream: Stream) -> int:
    """Read commands and write events until either side ends; return the close code."""
    async with stream:
        reader = asyncio.create_task(_read_commands(websocket, realtime, stream))
        writer = asyncio.create_task(_write_messages(websocket, stream))
        aborted = stream.conn.aborted
        either: set[asyncio.Future[Any]] = {reader, writer, aborted, realtime.exit_signal}
        done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        draining = done == {realtime.exit_signal}
        if draining:
            await _drain_socket(realtime, stream, reader, writer)
        # Both may have ended by now: look at each (an error nobody looked at gets logged).
        ended = [task for task in (reader, writer) if task.done() and not task.cancelled()]
        errors = [error for task in ended if (error := task.exception()) is not None]
        for task in (reader, writer):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if aborted in done:
            return WS_SLOW
        if errors:
            raise errors[0]  # for _close_for
        if draining:
            return WS_GOING_AWAY
        return ended[0].result() if ended else WS_DONE


async def _drain_socket(
    realtime: Realtime, stream: Stream, reader: asyncio.Task[int], writer: asyncio.Task[int]
) -> None:
    """The server is shutting down: take no new command, let the one in flight commit and
    its answer go out (within the drain), then end the writer after what is queued.

    A command the client sent is thus either answered (and committed) or not read at all.
    """
    drain = realtime.settings.shutdown_drain_seconds
    if not stream.commanding:
        reader.cancel()  # waiting for the next command: none is half done
    await asyncio.wait({reader}, timeout=drain / 2)
    stream.conn.close(SHUTDOWN)  # the writer sends what is queued (the last answer), then ends
    await asyncio.wait({writer}, timeout=drain / 2)


async def _write_messages(websocket: WebSocket, stream: Stream) -> int:
    """Send history, then live events and replies; return the close code."""
    try:
        await _write_history(websocket, stream)
        # From now on the fan-out writes events to this socket itself while this task waits.
        stream.conn.sink = ws_sink(websocket)
        async for batch in stream.live():
            for live in batch:
                if isinstance(live, Outgoing):
                    text = live.json
                elif isinstance(live, events.SocketAck | events.SocketError):
                    text = live.model_dump_json()
                else:
                    continue
                await websocket.send_text(text)
    except Closed as closed:
        return {SLOW: WS_SLOW, REMOVED: WS_REMOVED}.get(closed.reason, WS_GOING_AWAY)
    except WebSocketDisconnect:
        pass  # the client went away mid-send
    finally:
        stream.conn.sink = None
    return WS_DONE


async def _write_history(websocket: WebSocket, stream: Stream) -> None:
    # Its own frame, as for SSE: the snapshot (the room's state, ~20 KB with 20 players) and
    # its JSON are not kept alive for the socket's whole life by the writer's locals.
    async for item in stream.history():
        text = item.json if isinstance(item, Outgoing) else snapshot_json(stream.actor.room_id, item)
        await websocket.send_text(text)


def _request_id(raw: str) -> str | None:
    """Return the request_id of a command that is not valid, if it has one that is (a lone
    surrogate, say, is not: it could not be echoed)."""
    with contextlib.suppress(ValueError):  # ValidationError is one
        message = json.loads(raw)
        if isinstance(message, dict) and "request_id" in message:
            return REQUEST_ID.validate_python(message["request_id"])
    return None


async def _read_commands(websocket: WebSocket, realtime: Realtime, stream: Stream) -> int:
    """Answer each client command with an ack or an error; return the close code."""
    limit = realtime.settings.ws_max_message_bytes
    max_depth = realtime.settings.max_json_depth
    conn = stream.conn
    while True:
        stream.commanding = False
        if realtime.exiting:
            return WS_GOING_AWAY
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return WS_DONE
        if message["type"] == "websocket.disconnect":
            return WS_DONE
        raw = message.get("text")
        if raw is None:
            return WS_BINARY  # commands are JSON text frames
        if len(raw.encode()) > limit:
            return WS_TOO_BIG
        if json_too_deep(raw, max_depth):
            # Not parsed at all (the parsers recurse as deep): no request_id to answer with.
            detail = too_deep_detail(max_depth)
            conn.send_control(
                events.SocketError(
                    type="error", request_id=None, code="validation_failed", detail=f"{detail}."
                )
            )
            continue
        try:
            command = SOCKET_COMMAND.validate_json(raw)
        except ValidationError as exc:
            where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()) or "message"
            conn.send_control(
                events.SocketError(
                    type="error",
                    request_id=_request_id(raw),
                    code="validation_failed",
                    detail=f"Not valid: {where}.",
                )
            )
            continue
        if isinstance(command, events.PingCommand):
            conn.send_control(events.SocketAck(type="ack", request_id=command.request_id))
            continue
        if stream.actor.spectator:
            # A spectator watches: every command but ping is refused, and the socket stays open.
            refused = SpectatorRefused()
            conn.send_control(
                events.SocketError(
                    type="error", request_id=command.request_id, code=refused.code, detail=refused.detail
                )
            )
            continue
        stream.commanding = True
        try:
            if isinstance(command, events.VoteCommand):
                seq = await _act(realtime, stream.actor, _vote(command))
            elif isinstance(command, events.ActionCommand):
                seq = await _act(realtime, stream.actor, command.action)
            else:
                request = api.ChatMessageRequest(text=command.text)
                seq = (await chat(realtime, stream.actor.room_id, stream.actor, request)).seq
        except (AppError, RuleError) as exc:
            conn.send_control(
                events.SocketError(
                    type="error", request_id=command.request_id, code=exc.code, detail=exc.detail
                )
            )
            continue
        except Exception as exc:
            if not database_down(exc):
                raise
            # As the HTTP command's 503: nothing was written, the client sends it again.
            log.warning("command refused, database unavailable: %s", type(exc).__name__)
            unavailable = DatabaseUnavailable()
            conn.send_control(
                events.SocketError(
                    type="error",
                    request_id=command.request_id,
                    code=unavailable.code,
                    detail=unavailable.detail,
                )
            )
            continue
        conn.send_control(events.SocketAck(type="ack", request_id=command.request_id, seq=seq))
