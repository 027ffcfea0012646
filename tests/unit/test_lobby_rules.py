"""The pure lobby rules, without a database."""

from __future__ import annotations

import pytest

from backend.domain import lobby
from backend.games.mafia.ruleset import RULESET as MAFIA
from backend.games.projection import Now, Viewer, may_see


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
    merged = lobby.merge_settings(dict(MAFIA.defaults), {"night_seconds": 5}, 3)
    assert merged["night_seconds"] == 5
    assert merged["day_seconds"] == 120
    with pytest.raises(lobby.MaxPlayersBelowPlayerCount):
        lobby.merge_settings(dict(MAFIA.defaults), {"max_players": 4}, 5)


def test_the_projection_shows_each_audience_to_its_own_and_history_as_it_stands() -> None:
    """Stream events as they stood when committed; history opens sealed phases and, at the end,
    everything but what is for nobody."""
    town = Viewer(player_id="t", team="town")
    mafia = Viewer(player_id="m", team="mafia")
    assert may_see(town, "room", None)
    assert not may_see(town, "team", "mafia")
    assert may_see(mafia, "team", "mafia")
    assert may_see(town, "player", "t")
    assert not may_see(town, "player", "m")
    running, finished = Now("in_progress", "2:approve:1"), Now("finished")
    assert not may_see(town, "team", "mafia", running)
    assert may_see(town, "team", "mafia", finished)
    assert may_see(town, "player", "m", finished)
    # Sealed: never streamed; in history, hidden while its phase is open, then everyone's.
    assert not may_see(town, "sealed", "2:approve:1")
    assert not may_see(town, "sealed", "2:approve:1", running)
    assert may_see(town, "sealed", "2:approve:1", Now("in_progress", "2:mission:1"))
    assert may_see(town, "sealed", "2:approve:1", Now("in_progress", "2:approve:2"))
    # Nobody: not even at the end, not even the player it is about.
    assert not any(
        may_see(v, "nobody", None, now) for v in (town, mafia) for now in (None, running, finished)
    )
    # An abandoned (closed) game reveals nothing more than a running one.
    assert not may_see(town, "team", "mafia", Now("closed", "2:approve:1"))
