"""The pure lobby rules, without a database."""

from __future__ import annotations

import pytest

from backend.domain import lobby
from backend.domain.visibility import Viewer, may_see_event, may_see_role


def test_join_codes_use_the_unambiguous_alphabet() -> None:
    codes = {lobby.new_join_code() for _ in range(500)}
    assert len(codes) > 490
    for code in codes:
        assert len(code) == 6
        assert not set(code) & set("IO01")


def test_the_newcomer_takes_the_lowest_free_seat() -> None:
    present = [lobby.Seated(1, "a"), lobby.Seated(3, "c")]
    assert lobby.check_can_join("lobby", {"max_players": 10}, present, "b") == 2
    assert lobby.lowest_free_seat([]) == 1
    assert lobby.lowest_free_seat([1, 2, 3]) == 4


@pytest.mark.parametrize(
    ("status", "max_players", "nickname", "error"),
    [
        ("in_progress", 10, "new", lobby.RoomNotInLobby),
        ("closed", 10, "new", lobby.RoomNotInLobby),
        ("lobby", 2, "new", lobby.RoomFull),
        ("lobby", 10, "  ALICE ", lobby.NicknameTaken),
    ],
)
def test_joins_are_refused_with_their_reason(
    status: str, max_players: int, nickname: str, error: type[lobby.LobbyError]
) -> None:
    present = [lobby.Seated(1, "alice"), lobby.Seated(2, "bob")]
    with pytest.raises(error):
        lobby.check_can_join(status, {"max_players": max_players}, present, nickname)


def test_nickname_keys_ignore_case_and_surrounding_space() -> None:
    assert lobby.nickname_key("  Straße ") == lobby.nickname_key("STRASSE")


def test_the_next_host_is_the_lowest_remaining_seat() -> None:
    players = [(3, "c"), (1, "a"), (2, "b")]
    assert lobby.next_host(players, "a") == "b"
    assert lobby.next_host(players, "b") == "a"
    assert lobby.next_host([(1, "a")], "a") is None


def test_settings_cannot_shrink_below_the_players_present() -> None:
    merged = lobby.merge_settings(dict(lobby.DEFAULT_SETTINGS), {"night_seconds": 5}, 3)
    assert merged["night_seconds"] == 5
    assert merged["day_seconds"] == 120
    with pytest.raises(lobby.MaxPlayersBelowPlayerCount):
        lobby.merge_settings(dict(lobby.DEFAULT_SETTINGS), {"max_players": 4}, 5)


def test_visibility_of_events_and_roles() -> None:
    town = Viewer(player_id="t", team="town")
    mafia = Viewer(player_id="m", team="mafia")
    assert may_see_event(town, "room", None)
    assert not may_see_event(town, "team", "mafia")
    assert may_see_event(mafia, "team", "mafia")
    assert may_see_event(town, "player", "t")
    assert not may_see_event(town, "player", "m")
    assert may_see_role(town, "t", "town", "in_progress")
    assert not may_see_role(town, "m", "mafia", "in_progress")
    assert may_see_role(mafia, "m2", "mafia", "in_progress")
    assert may_see_role(town, "m", "mafia", "finished")
