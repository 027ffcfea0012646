"""`roundtable-bots` against a served app: a whole game, also across a kill -9 and a restart."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from backend.core.database_url import to_async_url
from tests.support import ROOT, free_port, serve


def bots(url: str, *args: str) -> subprocess.Popen[str]:
    """Start the bots CLI as a user would run it."""
    command = [sys.executable, "-m", "roundtable.cli", "--url", url, *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


class Output:
    """Collect a process's output in the background, so the test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        self.thread = threading.Thread(
            target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True
        )
        self.thread.start()

    def wait_for(self, pattern: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not any(re.search(pattern, line) for line in self.lines):
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.05)

    @property
    def text(self) -> str:
        return "".join(self.lines)


async def finished_games(database_url: str, room_id: str) -> list[str]:
    """Return the winners of the room's game.finished events."""
    engine = create_async_engine(to_async_url(database_url))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT data->>'winner' FROM room_events WHERE room_id = :r AND type = 'game.finished'"),
                {"r": room_id},
            )
            return [row[0] for row in rows]
    finally:
        await engine.dispose()


async def connected_before_start(database_url: str, room_id: str) -> tuple[int, int]:
    """Return how many players the log shows connected before game.started, and how many joined."""
    engine = create_async_engine(to_async_url(database_url))
    try:
        async with engine.connect() as conn:
            started = (
                await conn.execute(
                    text("SELECT seq FROM room_events WHERE room_id = :r AND type = 'game.started'"),
                    {"r": room_id},
                )
            ).scalar_one()
            connected = (
                await conn.execute(
                    text(
                        "SELECT count(DISTINCT data->>'player_id') FROM room_events WHERE room_id = :r"
                        " AND type = 'presence.changed' AND (data->>'connected')::boolean AND seq < :s"
                    ),
                    {"r": room_id, "s": started},
                )
            ).scalar_one()
            joined = (
                await conn.execute(
                    text("SELECT count(*) FROM players WHERE room_id = :r"),
                    {"r": room_id},
                )
            ).scalar_one()
            return connected, joined
    finally:
        await engine.dispose()


def room_of(output: str) -> str:
    """Return the id of the room the bots created."""
    match = re.search(r"created room [A-Z0-9]{6} \(([0-9a-f-]{36})\)", output)
    assert match, output
    return match.group(1)


def test_eight_bots_create_a_room_and_play_it_to_the_end(database_url: str, tmp_path: Path) -> None:
    """`roundtable-bots --count 8 --phase-seconds 2` exits 0 printing the winner the log records.

    The host starts the game only once every bot's stream is open, so no bot misses night 1.
    """
    with serve(database_url, tmp_path / "server.log") as server:
        process = bots(server.url, "--count", "8", "--phase-seconds", "2", "--seed", "7")
        out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    assert "round 1 night: 8 alive" in out
    winner = re.search(r"^winner: (town|mafia)$", out, re.MULTILINE)
    assert winner, out
    room = room_of(out)
    assert asyncio.run(finished_games(database_url, room)) == [winner.group(1)]
    assert asyncio.run(connected_before_start(database_url, room)) == (8, 8)


def test_roundtable_bots_plays_missions_to_the_end(database_url: str, tmp_path: Path) -> None:
    """`roundtable-bots --ruleset missions --count 6` plays missions: exit 0 with the logged winner."""
    with serve(database_url, tmp_path / "server.log") as server:
        process = bots(
            server.url, "--ruleset", "missions", "--count", "6", "--phase-seconds", "5", "--seed", "3"
        )
        out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    assert "round 1 propose (proposal 1): 6 alive" in out
    assert re.search(r"^  \S+ proposes \S+, ", out, re.MULTILINE), out
    assert re.search(r"^  (approved|rejected \(1 this round\)): \d of 6 approve$", out, re.MULTILINE), out
    winner = re.search(r"^winner: (crew|spies)$", out, re.MULTILINE)
    assert winner, out
    assert asyncio.run(finished_games(database_url, room_of(out))) == [winner.group(1)]


def test_the_bots_finish_the_game_across_a_server_kill_and_restart(database_url: str, tmp_path: Path) -> None:
    """kill -9 the server mid-game, restart it on the same port: the bots resume and finish, once."""
    port = free_port()
    log = tmp_path / "server.log"
    with serve(database_url, log, port=port) as first:
        process = bots(first.url, "--count", "8", "--phase-seconds", "2", "--seed", "11")
        output = Output(process)
        output.wait_for(r"round 1 (day|vote)", within=120)
        first.kill()
    time.sleep(3)  # a deadline passes while the server is down
    with serve(database_url, log, port=port):
        process.wait(timeout=300)
        output.thread.join(timeout=10)
    assert process.returncode == 0, output.text
    winner = re.search(r"^winner: (town|mafia)$", output.text, re.MULTILINE)
    assert winner, output.text
    assert asyncio.run(finished_games(database_url, room_of(output.text))) == [winner.group(1)]
