"""The bench's game mode (tests/bench/games.py) plays real games against a served app: rooms of
8 finish games and start new rooms, and no stream misses an event its player may see."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import loadgen
from tests.support import NO_RATE_LIMITS, serve

ENV = {**NO_RATE_LIMITS, "MAX_STREAMS_PER_PLAYER": "16"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("game", "transport", "rate"),
    [("mafia", "sse", None), ("missions", "ws", "200")],
)
def test_rooms_of_8_play_games_back_to_back_and_lose_nothing(
    database_url: str, tmp_path: Path, game: str, transport: str, rate: str | None
) -> None:
    log = tmp_path / "server.log"
    with serve(database_url, log, ENV) as server:
        # Until three games have finished: two rooms, so at least one of them played a second
        # game in a room its players made when the first ended (the duration is only a cap).
        args = ["--game", game, "--transport", transport, "--rooms-of-8", "2", "--until-games", "3"]
        args += ["--duration", "300", *(["--rate", rate] if rate else [])]
        result = loadgen(server.url, server.process.pid, *args)
    assert "Traceback" not in log.read_text(), log.read_text()
    assert result["games_finished"] >= 3, result
    assert result["deliveries"] > 0, result
    assert result["events_compared"] > 0, result
    assert result["lost"] == 0, result
    assert result["extra"] == 0, result
    assert result["streams_closed"] == 0, result


@pytest.mark.slow
def test_spectators_watch_a_game_to_its_end_and_lose_nothing(database_url: str, tmp_path: Path) -> None:
    """The spectator row (tests/bench/spectators.py): every spectator receives every public event."""
    log = tmp_path / "server.log"
    with serve(database_url, log, ENV) as server:
        args = ["--game", "mafia", "--rooms-of-8", "1", "--until-games", "1", "--duration", "300"]
        result = loadgen(server.url, server.process.pid, *args, "--spectators", "60")
    assert "Traceback" not in log.read_text(), log.read_text()
    assert result["games_finished"] >= 1, result
    assert result["spectators"] == 60, result
    assert result["public_events"] > 0, result
    assert result["spectator_deliveries"] > 0, result
    assert result["spectators_lost"] == 0, result
    assert result["lost"] == 0, result
