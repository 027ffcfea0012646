"""Roundtable's Python SDK: a room session with typed commands and resuming event streams, and bots.

from roundtable import RoomSession

session = await RoomSession.create("http://127.0.0.1:8000", name="Friday", nickname="Ada")
async for event in session.events():
    print(event.type)
"""

from roundtable.bots import Bot, RandomStrategy, Strategy, View
from roundtable.errors import (
    CannotAct,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    GameNotFinished,
    GameNotFound,
    GameNotInProgress,
    Invalid,
    InvalidTarget,
    NicknameTaken,
    NotAMember,
    NotAPlayer,
    NotFound,
    NotHost,
    PhaseClosed,
    PlayerNotFound,
    RateLimited,
    RoomClosed,
    RoomFull,
    RoomNotFound,
    RoomNotInLobby,
    RoundtableError,
    ServerUnreachable,
    Spectating,
    Unauthorized,
    Unavailable,
)
from roundtable.session import Incoming, RoomSession, SocketSession, StreamGone

__all__ = [
    "Bot",
    "CannotAct",
    "Conflict",
    "DatabaseUnavailable",
    "Forbidden",
    "GameNotFinished",
    "GameNotFound",
    "GameNotInProgress",
    "Incoming",
    "Invalid",
    "InvalidTarget",
    "NicknameTaken",
    "NotAMember",
    "NotAPlayer",
    "NotFound",
    "NotHost",
    "PhaseClosed",
    "PlayerNotFound",
    "RandomStrategy",
    "RateLimited",
    "RoomClosed",
    "RoomFull",
    "RoomNotFound",
    "RoomNotInLobby",
    "RoomSession",
    "RoundtableError",
    "ServerUnreachable",
    "SocketSession",
    "Spectating",
    "Strategy",
    "StreamGone",
    "Unauthorized",
    "Unavailable",
    "View",
]
