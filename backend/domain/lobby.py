"""Lobby rules as pure functions: join codes, nicknames, seats, hosts, default settings."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from backend.domain.errors import RuleError
from backend.domain.nicknames import (
    NicknameKeys,
    Present,
    check_nickname_free,
    nickname_keys,
    normalize_nickname,
)
from backend.domain.nicknames import NicknameTaken as NicknameTaken  # re-exported: a lobby refusal too

# A-Z and 2-9 without the look-alikes I, O, 0 and 1.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6


class LobbyError(RuleError):
    """A lobby rule refused the command."""

    code = "lobby_error"


class RoomFull(LobbyError):
    code = "room_full"


class RoomNotInLobby(LobbyError):
    code = "room_not_in_lobby"


class MaxPlayersBelowPlayerCount(LobbyError):
    code = "max_players_below_player_count"


class ChatClosed(LobbyError):
    code = "chat_closed"


class RoomClosed(LobbyError):
    """The room closed (idle, abandoned, emptied): it takes no command any more."""

    code = "room_closed"


def new_join_code() -> str:
    """Return a random join code."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def clean_text(value: str) -> str:
    """Return `value` without surrounding whitespace."""
    return value.strip()


def nickname_key(nickname: str) -> str:
    """Return the form under which nicknames must be unique: case and look-alikes ignored."""
    return nickname_keys(clean_text(nickname)).folded


@dataclass(frozen=True)
class Seated:
    """A present player as the lobby rules see them (`keys` as stored, else computed)."""

    seat: int
    nickname: str
    keys: NicknameKeys | None = None


def check_can_join(status: str, settings: dict[str, Any], present: Sequence[Seated], nickname: str) -> int:
    """Return the seat the newcomer takes, or raise why they may not join."""
    if status != "lobby":
        raise RoomNotInLobby(f"The room is {status}; players join only in the lobby.")
    if len(present) >= settings["max_players"]:
        raise RoomFull(f"The room is full ({settings['max_players']} players).")
    check_nickname_free(
        normalize_nickname(nickname),
        [Present(p.nickname, p.keys or nickname_keys(p.nickname)) for p in present],
    )
    return lowest_free_seat(p.seat for p in present)


def lowest_free_seat(taken: Iterable[int]) -> int:
    """Return the lowest seat number, from 1, that nobody holds."""
    used = set(taken)
    seat = 1
    while seat in used:
        seat += 1
    return seat


def next_host(present_by_seat: Sequence[tuple[int, Any]], leaving: Any) -> Any | None:
    """Return the id of the player with the lowest seat other than `leaving`, if any."""
    for _, player_id in sorted(present_by_seat, key=lambda p: p[0]):
        if player_id != leaving:
            return player_id
    return None


def merge_settings(current: dict[str, Any], changes: dict[str, Any], player_count: int) -> dict[str, Any]:
    """Return `current` with `changes` applied, or raise when they do not fit the room."""
    merged = {**current, **changes}
    if merged["max_players"] < player_count:
        raise MaxPlayersBelowPlayerCount(
            f"max_players {merged['max_players']} is below the {player_count} players already in the room."
        )
    return merged
