"""Roundtable's Python SDK: a room session with typed commands and resuming event streams, and bots.

from roundtable import RoomSession

session = await RoomSession.create("http://127.0.0.1:8000", name="Friday", nickname="Ada")
async for event in session.events():
    print(event.type)
"""

from roundtable.bots import Bot, RandomStrategy, Strategy, View
from roundtable.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    RoundtableError,
    Unauthorized,
    Unavailable,
)
from roundtable.session import Incoming, RoomSession, SocketSession, StreamGone

__all__ = [
    "Bot",
    "Conflict",
    "Forbidden",
    "Incoming",
    "Invalid",
    "NotFound",
    "RandomStrategy",
    "RateLimited",
    "RoomSession",
    "RoundtableError",
    "SocketSession",
    "Strategy",
    "StreamGone",
    "Unauthorized",
    "Unavailable",
    "View",
]
