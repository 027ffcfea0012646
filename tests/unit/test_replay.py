"""The platform's one replay (backend/games/replay.py): a log folded event by event, whatever
the ruleset, across leaves, a rematch and a close."""

from __future__ import annotations

from typing import Any

from backend.games.replay import Replayed, ReplayedPlayer, replay, states


def joined(pid: str, seat: int) -> dict[str, Any]:
    return {"type": "player.joined", "data": {"player": {"id": pid, "nickname": pid.upper(), "seat": seat}}}


def dealt(pid: str, role: str, team: str) -> dict[str, Any]:
    return {"type": "role.assigned", "data": {"player_id": pid, "role": role, "team": team}}


STARTED = {"type": "game.started", "data": {"room": {}, "roles": None}}
LOBBY = [joined("b", 2), joined("a", 1), joined("c", 3)]
GAME = [
    STARTED,
    dealt("a", "spy", "spies"),
    dealt("b", "crew", "crew"),
    dealt("c", "crew", "crew"),
    {"type": "phase.started", "data": {"round": 1, "phase": "propose", "attempt": 1}},
    {"type": "chat.message", "data": {"player_id": "a", "text": "hi", "channel": "room"}},
    {"type": "phase.started", "data": {"round": 2, "phase": "approve", "attempt": 3}},
    {"type": "game.finished", "data": {"winner": "spies", "players": []}},
]


def test_players_are_seated_by_seat_and_leave() -> None:
    lobby = replay([*LOBBY, {"type": "player.left", "data": {"player_id": "b", "reason": "left"}}])
    assert lobby == Replayed(players=(ReplayedPlayer("a", "A", 1), ReplayedPlayer("c", "C", 3)))


def test_a_game_is_told_step_by_step_and_chat_changes_nothing() -> None:
    steps = list(states([*LOBBY, *GAME]))
    assert len(steps) == len(LOBBY) + len(GAME)
    assert steps[len(LOBBY)] == Replayed(status="in_progress", players=steps[len(LOBBY) - 1].players)
    assert steps[len(LOBBY) + 5] == steps[len(LOBBY) + 4]  # the chat message
    end = steps[-1]
    assert (end.status, end.round, end.phase, end.winner) == ("finished", 2, None, "spies")
    assert [(p.id, p.role, p.team, p.alive) for p in end.players] == [
        ("a", "spy", "spies", True),
        ("b", "crew", "crew", True),
        ("c", "crew", "crew", True),
    ]


def test_a_rematch_deals_afresh_and_a_close_ends_the_room() -> None:
    rematch = [
        STARTED,
        dealt("a", "citizen", "town"),
        {"type": "phase.started", "data": {"round": 1, "phase": "night"}},
        {"type": "player.eliminated", "data": {"round": 1, "player_id": "a", "cause": "killed"}},
    ]
    after_rematch = replay([*LOBBY, *GAME, *rematch])
    assert (after_rematch.status, after_rematch.round, after_rematch.phase, after_rematch.winner) == (
        "in_progress",
        1,
        "night",
        None,
    )
    assert [(p.id, p.role, p.alive) for p in after_rematch.players] == [
        ("a", "citizen", False),
        ("b", None, True),
        ("c", None, True),
    ]
    closed = replay([*LOBBY, *GAME, *rematch, {"type": "room.closed", "data": {"reason": "operator"}}])
    assert (closed.status, closed.phase, closed.round) == ("closed", None, 1)
    # A lobby whose last player left closes through room.updated.
    emptied = replay([joined("a", 1), {"type": "room.updated", "data": {"room": {"status": "closed"}}}])
    assert emptied.status == "closed"
