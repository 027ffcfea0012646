"""Lobby commands: each runs inside the caller's one transaction, under the room's row lock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import MISSING, BaseModel, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.contract import api, events
from backend.core.db import Database
from backend.core.problems import (
    NotAMember,
    NotHost,
    PlayerNotFound,
    RateLimited,
    RoomCodeRequired,
    RoomNotFound,
    SpectatorRefused,
    Unauthorized,
    ValidationFailed,
)
from backend.core.ratelimit import RateLimits
from backend.core.security import hash_token, new_token
from backend.domain import lobby, nicknames
from backend.game import repository as game_repository
from backend.games.protocol import Chatter, Visibility
from backend.games.registry import ruleset
from backend.persistence.events import GroupCommit, NewEvent, StoredEvent, append_event, append_events
from backend.persistence.tables import PlayerRow, RoomRow, SpectatorRow, VoteRow
from backend.rooms import repository
from backend.rooms.repository import Speaker
from backend.rooms.views import player_view, public_room_view, room_view, state_view


@dataclass(frozen=True)
class Actor:
    """The authenticated caller: a present player of `room_id`, and their team once dealt; or a
    spectator (`spectator`, `player_id` is the spectator's id), who only reads."""

    player_id: uuid.UUID
    room_id: uuid.UUID
    team: str | None = None
    spectator: bool = False


@dataclass(frozen=True)
class Committed:
    """What a command wrote: the room's newest seq (for the doorbell), and the events as stored
    when the command has them at hand (this worker's hub then needs no read to deliver them)."""

    room_id: uuid.UUID
    last_seq: int
    events: tuple[StoredEvent, ...] = ()


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json")
    return data


def _joined(player: PlayerRow, room: RoomRow) -> NewEvent:
    data = events.PlayerJoinedData(player=player_view(player, room))
    return NewEvent("player.joined", _dump(data))


def _room_updated(room: RoomRow, player_count: int) -> NewEvent:
    return NewEvent("room.updated", _dump(events.RoomUpdatedData(room=room_view(room, player_count))))


def _nickname(raw: str) -> str:
    """Return the nickname as stored and shown (NFKC, trimmed), or refuse it."""
    try:
        return nicknames.normalize_nickname(raw)
    except nicknames.NicknameLength as exc:
        # The schema's length rule, measured after NFKC (which may lengthen a nickname).
        raise ValidationFailed(
            exc.detail, [api.FieldError(loc=["body", "nickname"], message=exc.detail)]
        ) from None


def _new_player(room_id: uuid.UUID, nickname: str, seat: int) -> tuple[PlayerRow, str]:
    token = new_token()
    keys = nicknames.nickname_keys(nickname)
    player = PlayerRow(
        id=uuid.uuid4(),
        room_id=room_id,
        nickname=nickname,
        nickname_key=keys.folded,
        nickname_skeleton=keys.cased,
        seat=seat,
        token_hash=hash_token(token),
    )
    return player, token


async def create_room(
    session: AsyncSession, body: api.CreateRoomRequest
) -> tuple[api.RoomSession, Committed]:
    """Create a room in the lobby with its host as the first player."""
    nickname = _nickname(body.nickname)
    settings = dict(ruleset(body.ruleset).defaults)
    if body.settings is not MISSING:
        settings.update(body.settings.model_dump(mode="json", exclude_unset=True))
    return await _open_room(session, body.ruleset, lobby.clean_text(body.name), settings, nickname)


async def _open_room(
    session: AsyncSession, ruleset_name: str, name: str, settings: dict[str, Any], nickname: str
) -> tuple[api.RoomSession, Committed]:
    """Create a room in the lobby with these settings and its host, seated first."""
    room = RoomRow(
        id=uuid.uuid4(),
        code=lobby.new_join_code(),
        name=name,
        ruleset=ruleset_name,
        status="lobby",
        settings=settings,
    )
    await repository.insert_room(session, room)
    host, token = _new_player(room.id, nickname, seat=1)
    room.host_player_id = host.id
    session.add(host)
    await session.flush()
    await session.refresh(room)
    last_seq = await append_events(session, room, [_joined(host, room)])
    answer = api.RoomSession(room=room_view(room, 1), player=player_view(host, room), token=token)
    return answer, Committed(room.id, last_seq)


async def locked_room(session: AsyncSession, room_id: uuid.UUID, *, closed_ok: bool = False) -> RoomRow:
    """Return the room, its row locked until the transaction ends: commands on it queue here.

    A closed room takes no command (`room_closed`), unless the caller handles it (`closed_ok`).
    """
    room = await repository.lock_room(session, room_id)
    if room is None:
        raise RoomNotFound("No room with this id.")
    if room.status == "closed" and not closed_ok:
        raise closed_room()
    return room


def closed_room() -> lobby.RoomClosed:
    """Return the refusal of a command on a closed room."""
    return lobby.RoomClosed("The room is closed (idle, abandoned or empty); it takes no more commands.")


def _me(players: list[PlayerRow], actor: Actor) -> PlayerRow:
    for p in players:
        if p.id == actor.player_id:
            return p
    # Removed between authentication and the lock: the token no longer counts.
    raise Unauthorized("This token's player is no longer in the room.")


async def join_room(
    session: AsyncSession, room_id: uuid.UUID, body: api.JoinRoomRequest
) -> tuple[api.RoomSession, Committed]:
    """Add a player to a room in the lobby."""
    nickname = _nickname(body.nickname)
    room = await locked_room(session, room_id)
    if room.settings.get("private") and body.code != room.code:
        raise RoomCodeRequired("This room is private; join it with its code.")
    return await _seat(session, room, nickname)


async def _seat(session: AsyncSession, room: RoomRow, nickname: str) -> tuple[api.RoomSession, Committed]:
    """Seat a new player in the locked room, or refuse (not in the lobby, full, nickname taken)
    before writing anything."""
    players = list(await repository.present_players(session, room.id))
    present = [
        lobby.Seated(p.seat, p.nickname, nicknames.NicknameKeys(p.nickname_key, p.nickname_skeleton))
        for p in players
    ]
    seat = lobby.check_can_join(room.status, room.settings, present, nickname)
    player, token = _new_player(room.id, nickname, seat)
    session.add(player)
    last_seq = await append_events(session, room, [_joined(player, room)])
    answer = api.RoomSession(
        room=room_view(room, len(players) + 1), player=player_view(player, room), token=token
    )
    return answer, Committed(room.id, last_seq)


# Why a quick join passes a lobby over for the next one: it filled or started since it was
# chosen (a plain join or a start raced in), or the nickname is taken there.
_PASS_OVER = (lobby.RoomFull, lobby.RoomNotInLobby, nicknames.NicknameTaken, nicknames.NicknameConfusable)


async def quick_join(session: AsyncSession, body: api.QuickJoinRequest) -> tuple[api.RoomSession, Committed]:
    """Join the public lobby of the ruleset with the most players and a free seat (the oldest
    among equals), or create one with default settings and the caller as host.

    Quick joins of one ruleset take turns (a transaction-scoped advisory lock): each sees
    the seats the ones before it took, so none overfills a lobby or opens a new one while
    one has room. A plain join racing in may still fill the lobby chosen (or the host start
    it) before its lock is taken; then the next is tried. So is a lobby where the nickname
    is taken: the caller would rather play elsewhere than be refused.
    """
    nickname = _nickname(body.nickname)
    name = body.ruleset.value
    await repository.take_quick_join_turn(session, name)
    for room_id in await repository.open_lobbies(session, name):
        room = await locked_room(session, room_id, closed_ok=True)
        try:
            return await _seat(session, room, nickname)
        except _PASS_OVER:
            continue
    # A public room with the ruleset's defaults (settings.private is false by default).
    return await _open_room(session, name, f"Quick {name}", dict(ruleset(name).defaults), nickname)


async def watch_room(
    session: AsyncSession, room_id: uuid.UUID, body: api.WatchRoomRequest, watching: int
) -> api.SpectatorSession:
    """Let someone watch a room: a public room by its id, a private one with its code.

    The room's row is not locked: a spectator writes no event and takes no seat, so a crowd
    arriving at once never queues behind the game's commands (the spectator's foreign key
    only shares the row's key lock). `watching` is how many spectators are watching now.
    """
    nickname = _nickname(body.nickname) if body.nickname is not MISSING else None
    room = await repository.get_room(session, room_id)
    if room is None:
        raise RoomNotFound("No room with this id.")
    if room.status == "closed":
        raise closed_room()
    if room.settings.get("private") and body.code != room.code:
        raise RoomCodeRequired("This room is private; watch it with its code.")
    token = new_token()
    spectator = SpectatorRow(
        id=uuid.uuid4(), room_id=room.id, nickname=nickname, token_hash=hash_token(token)
    )
    session.add(spectator)
    await session.flush()
    players = await repository.count_present(session, room.id)
    return api.SpectatorSession(
        room=public_room_view(room, players, watching),
        spectator=api.Spectator(id=spectator.id, nickname=nickname),
        token=token,
    )


async def remove_player(
    session: AsyncSession, room_id: uuid.UUID, actor: Actor, player_id: uuid.UUID
) -> Committed:
    """Let a player leave, or the host kick one; hand the host role on; close an empty room."""
    room = await locked_room(session, room_id)
    players = list(await repository.present_players(session, room.id))
    me = _me(players, actor)
    target = next((p for p in players if p.id == player_id), None)
    if target is None:
        raise PlayerNotFound("No such player in this room.")
    if target.id != me.id:
        if room.host_player_id != me.id:
            raise NotHost("Only the host may remove another player.")
        if room.status != "lobby":
            raise lobby.RoomNotInLobby(f"The room is {room.status}; players are kicked only in the lobby.")
    reason = "left" if target.id == me.id else "kicked"
    target.left_at = datetime.now(UTC)
    target.left_reason = reason
    target.connected = False
    session.add(target)
    remaining = [p for p in players if p.id != target.id]
    left = events.PlayerLeftData(player_id=target.id, reason=events.LeaveReason(reason))
    new_events = [NewEvent("player.left", _dump(left))]
    if room.idle_since is None and not any(p.connected for p in remaining):
        room.idle_since = await game_repository.db_clock(session)  # nobody left is connected
    if not remaining:
        room.status = "closed"
        room.host_player_id = None
        room.ended_at = await game_repository.db_clock(session)
        new_events.append(_room_updated(room, 0))
    elif room.host_player_id == target.id:
        room.host_player_id = lobby.next_host([(p.seat, p.id) for p in players], target.id)
        new_events.append(_room_updated(room, len(remaining)))
    await session.flush()
    last_seq = await append_events(session, room, new_events)
    return Committed(room.id, last_seq)


async def update_room(
    session: AsyncSession, room_id: uuid.UUID, actor: Actor, body: api.UpdateRoomRequest
) -> tuple[api.Room, Committed]:
    """Change the room's name or settings: host only, in the lobby."""
    if body.name is MISSING and body.settings is MISSING:
        raise ValidationFailed(
            "Name at least one of name or settings.",
            [api.FieldError(loc=["body"], message="at least one of name, settings is required")],
        )
    room = await locked_room(session, room_id)
    players = list(await repository.present_players(session, room.id))
    me = _me(players, actor)
    if room.host_player_id != me.id:
        raise NotHost("Only the host may change the room.")
    if room.status != "lobby":
        raise lobby.RoomNotInLobby(f"The room is {room.status}; it can be changed only in the lobby.")
    if body.name is not MISSING:
        room.name = lobby.clean_text(body.name)
    if body.settings is not MISSING:
        rules = ruleset(room.ruleset)
        changes = _settings_of(
            rules.settings_input, body.settings.model_dump(mode="json", exclude_unset=True)
        )
        room.settings = lobby.merge_settings(room.settings, changes, len(players))
        rules.check_settings(room.settings, len(players))
    last_seq = await append_events(session, room, [_room_updated(room, len(players))])
    return room_view(room, len(players)), Committed(room.id, last_seq)


def _settings_of(model: type[BaseModel], changes: dict[str, Any]) -> dict[str, Any]:
    """Return the changes as the room's own ruleset takes them, or refuse them (422)."""
    try:
        checked: dict[str, Any] = model.model_validate(changes).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        errors = [api.FieldError(loc=["body", "settings", *e["loc"]], message=e["msg"]) for e in exc.errors()]
        raise ValidationFailed("These settings are not this room's ruleset's.", errors) from None
    return checked


class KnownSpeakers:
    """The speakers this process last read, by token hash or player id, so a chat can go
    straight to its append: one statement, one round trip.

    Never trusted: an entry only supplies the `state_seq` the append must still find, and
    every change that could make it wrong (a departure revoking the token, a death, the
    deal, a phase) appends an event that moves `state_seq`; then the chat reads again.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._entries: dict[str | uuid.UUID, Speaker] = {}

    def get(self, key: str | uuid.UUID) -> Speaker | None:
        """Return the speaker last read under `key`, if any."""
        return self._entries.get(key)

    def put(self, key: str | uuid.UUID, speaker: Speaker) -> None:
        """Remember `speaker` under `key` (forgetting everything when full: cheap and bounded)."""
        if len(self._entries) >= self.size and key not in self._entries:
            self._entries.clear()
        self._entries[key] = speaker

    def drop(self, key: str | uuid.UUID) -> None:
        """Forget `key`."""
        self._entries.pop(key, None)


async def _read_speaker(conn: asyncpg.Connection, room_id: uuid.UUID, key: str | uuid.UUID) -> Speaker:
    """Read who is about to chat in `room_id`, with their room's state, in one statement:
    by a bearer token's hash (the token checked here) or by the player id of an actor
    already known (a socket's, or a re-read)."""
    if isinstance(key, str):
        speaker = await repository.speaker_by_token(conn, key)
        if speaker is None:
            watched = await repository.spectator_room(conn, key)
            if watched is None:
                raise Unauthorized("The token is unknown or no longer valid.")
            if watched != room_id:
                raise NotAMember("This token belongs to another room.")
            raise SpectatorRefused()
        if speaker.room_id != room_id:
            raise NotAMember("This token belongs to another room.")
        return speaker
    speaker = await repository.speaker_by_id(conn, key)
    if speaker is None:
        raise Unauthorized("This token's player is no longer in the room.")
    return speaker


# Unlocked attempts before chat takes the room's lock (each lost one saw a state change).
CHAT_ATTEMPTS = 3


async def send_chat(
    db: Database,
    appends: GroupCommit,
    room_id: uuid.UUID,
    caller: Actor | str,
    body: api.ChatMessageRequest,
    known: KnownSpeakers,
    limits: RateLimits,
) -> tuple[api.ChatMessageAccepted, Committed]:
    """Append a chat message, heard by whom the room's phase allows (the whole room in the lobby).

    The busiest command, so it takes the leanest path: decide on the room and speaker as
    last read (`known`, else `_read_speaker`), then append with the messages of other
    commands in flight, in one statement and one commit (`appends`), on the condition that
    no other event changed the room meanwhile; else read again and decide again. No
    transaction block, no lock held across a round trip. After a few lost races it locks
    the room, so it always gets through.
    """
    if isinstance(caller, Actor) and caller.spectator:
        raise SpectatorRefused()
    key = hash_token(caller) if isinstance(caller, str) else caller.player_id
    speaker = known.get(key)
    try:
        if speaker is None or speaker.room_id != room_id:
            async with db.driver(transaction=False) as conn:
                speaker = await _read_speaker(conn, room_id, key)
        await limits.check(limits.chat, speaker.player_id)
        text = lobby.clean_text(body.text)
        for attempt in range(CHAT_ATTEMPTS):
            if attempt > 0:
                async with db.driver(transaction=False) as conn:
                    speaker = await _read_speaker(conn, speaker.room_id, speaker.player_id)
            stored = await appends.append(speaker.room_id, _chat_event(speaker, text), speaker.state_seq)
            if stored is not None:
                return _chat_accepted(known, key, speaker, stored)
        async with db.driver() as conn:
            await repository.lock_room_row(conn, speaker.room_id)
            speaker = await _read_speaker(conn, speaker.room_id, speaker.player_id)
            stored = await append_event(conn, speaker.room_id, _chat_event(speaker, text), speaker.state_seq)
        if stored is None:  # pragma: no cover
            raise AssertionError("the locked attempt cannot lose the race")
        return _chat_accepted(known, key, speaker, stored)
    except RateLimited:
        raise  # the speaker as read still holds: a flood of refusals costs no reads
    except BaseException:
        known.drop(key)
        raise


def _chat_accepted(
    known: KnownSpeakers, key: str | uuid.UUID, speaker: Speaker, stored: StoredEvent
) -> tuple[api.ChatMessageAccepted, Committed]:
    known.put(key, speaker)
    accepted = api.ChatMessageAccepted(seq=stored.seq, channel=api.ChatChannel(stored.data["channel"]))
    return accepted, Committed(speaker.room_id, stored.seq, (stored,))


def _chat_event(speaker: Speaker, text: str) -> NewEvent:
    channel, visibility, audience = chat_channel(speaker)
    data = _dump(events.ChatMessageData(player_id=speaker.player_id, text=text, channel=channel))
    return NewEvent("chat.message", data, visibility, audience)


def chat_channel(speaker: Speaker) -> tuple[api.ChatChannel, Visibility, str | None]:
    """Return who hears the player now: the room in the lobby and after the game; while it
    runs, whom the room's ruleset says."""
    if speaker.status == "in_progress":
        channel, audience = ruleset(speaker.ruleset).chat_channel(
            Chatter(speaker.phase, speaker.team, speaker.alive)
        )
        return channel, audience.visibility, audience.key
    if speaker.status == "closed":
        raise closed_room()
    if speaker.status not in ("lobby", "finished"):
        raise lobby.ChatClosed(f"The room is {speaker.status}; chat is closed.")
    return api.ChatChannel.room, Visibility.room, None


async def set_presence(
    session: AsyncSession, room_id: uuid.UUID, player_id: uuid.UUID, connected: bool, worker_id: uuid.UUID
) -> Committed | None:
    """Record that a worker opened a player's first stream or closed its last one.

    The player is connected while any living worker holds a stream lease; None when the
    room sees no change. The room is idle (`idle_since`) while none of its players is
    connected. A closed room records nothing: it appends no more events.
    """
    room = await locked_room(session, room_id, closed_ok=True)
    # Locked before the leases are read: see repository.hold_lease_if_connected.
    player = await repository.present_player(session, room.id, player_id, lock=True)
    if player is None:
        return None
    if connected:
        await repository.hold_lease(session, worker_id, room.id, player.id)
    else:
        await repository.drop_lease(session, worker_id, player.id)
        if await repository.has_fresh_lease(session, player.id):
            return None  # a stream on another worker keeps the player connected
    if player.connected == connected or room.status == "closed":
        return None
    player.connected = connected
    session.add(player)
    if connected:
        room.idle_since = None
    elif not await repository.others_connected(session, room.id, player.id):
        room.idle_since = await game_repository.db_clock(session)
    data = events.PresenceChangedData(player_id=player.id, connected=connected)
    last_seq = await append_events(session, room, [NewEvent("presence.changed", _dump(data))])
    return Committed(room.id, last_seq)


async def get_public_room(session: AsyncSession, room_id: uuid.UUID, watching: int = 0) -> api.RoomSummary:
    """Return a room's public summary (a private room's without its join code), with how many
    spectators are `watching`."""
    room = await repository.get_room(session, room_id)
    if room is None:
        raise RoomNotFound("No room with this id.")
    return public_room_view(room, await repository.count_present(session, room.id), watching)


async def get_state(session: AsyncSession, room_id: uuid.UUID, actor: Actor) -> api.RoomState:
    """Return the caller's view of the room, with the seq it is current as of: a spectator's
    (`me` null) is what the ruleset shows someone who is not a player."""
    room = await repository.get_room(session, room_id)
    if room is None:
        raise RoomNotFound("No room with this id.")
    players = list(await repository.present_players(session, room.id))
    me = None if actor.spectator else _me(players, actor)
    ballots: list[VoteRow] = []
    if room.status == "in_progress" and room.phase is not None and room.game is not None:
        attempt = ruleset(room.ruleset).position(ruleset(room.ruleset).load(room.game)).attempt
        ballots = list(
            await game_repository.current_ballots(
                session, room.id, room.game_number, room.round, room.phase, attempt
            )
        )
    return state_view(room, players, me, ballots, viewer_id=str(actor.player_id))


async def authenticate(conn: asyncpg.Connection, token: str, room_id: uuid.UUID) -> Actor:
    """Return the actor a token stands for, if it belongs to a present player of `room_id` or
    to a spectator of it (who reads; `command_actor` refuses their commands)."""
    holder = await repository.token_holder(conn, hash_token(token))
    if holder is None:
        raise Unauthorized("The token is unknown or no longer valid.")
    holder_id, holder_room, team, spectator = holder
    if holder_room != room_id:
        raise NotAMember("This token belongs to another room.")
    return Actor(player_id=holder_id, room_id=holder_room, team=team, spectator=spectator)


async def list_rooms(
    session: AsyncSession, *, status: api.RoomStatus | None, code: str | None, limit: int, cursor: str | None
) -> api.RoomPage:
    """Return one page of rooms, newest first."""
    rows = await repository.list_rooms(
        session,
        status=status.value if status else None,
        code=code,
        limit=limit + 1,
        before=int(cursor) if cursor else None,
    )
    page = rows[:limit]
    next_cursor = str(page[-1][0].list_key) if len(rows) > limit else None
    return api.RoomPage(items=[room_view(room, count) for room, count in page], next_cursor=next_cursor)
