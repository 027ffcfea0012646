"""The game as clients live it: bots on SSE streams, hidden information, deadlines under load,
a killed server, and two servers sharing the scheduler."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect as ws_connect

from backend.contract import events
from backend.core.database_url import to_async_url
from backend.games.replay import replay
from tests.game_support import Seat, new_room, start, state
from tests.support import check_envelope, serve, sse_events, sse_stream

NIGHT_ACTION = {"mafia": "kill", "doctor": "protect", "detective": "investigate"}


async def room_log(database_url: str, room_id: str) -> list[dict[str, Any]]:
    """Return the room's whole event log (every audience), in seq order."""
    engine = create_async_engine(to_async_url(database_url))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT seq, type, data, visibility, audience FROM room_events"
                    " WHERE room_id = :r ORDER BY seq"
                ),
                {"r": room_id},
            )
            return [dict(row._mapping) for row in rows]
    finally:
        await engine.dispose()


class Truth:
    """Who is who in one game, to judge what each player was shown."""

    def __init__(self, roles: dict[str, str]) -> None:
        self.roles = roles
        self.mafia = {p for p, r in roles.items() if r == "mafia"}

    def check_event(self, viewer: str, event: dict[str, Any]) -> None:
        """Fail if a live or replayed event shows `viewer` what the rules hide from them."""
        kind, data = event["type"], event.get("data", {})
        in_mafia = viewer in self.mafia
        if kind == "role.assigned":
            assert data["player_id"] == viewer, f"{viewer} saw another player's role"
        elif kind == "vote.cast" and data["action"] != "eliminate":
            assert data["voter_id"] == viewer or (data["action"] == "kill" and in_mafia), "night vote leaked"
        elif kind == "vote.closed" and data["phase"] == "night":
            assert in_mafia, "the mafia's tally leaked"
        elif kind == "night.result":
            assert data["detective_id"] == viewer, "an investigation leaked"
        elif kind == "chat.message" and data["channel"] == "mafia":
            assert in_mafia, "mafia chat leaked"
        elif kind == "snapshot":
            self.check_view(viewer, data, dead=set())

    def check_view(self, viewer: str, view: Any, dead: set[str]) -> None:
        """Fail if a state, snapshot or rounds answer shows `viewer` a hidden role, vote or result."""
        in_mafia = viewer in self.mafia
        if isinstance(view, list):
            for item in view:
                self.check_view(viewer, item, dead)
            return
        if not isinstance(view, dict):
            return
        if "nickname" in view and view.get("role") is not None:
            pid = view["id"]
            assert pid == viewer or pid in dead or (in_mafia and pid in self.mafia), (
                f"{viewer} saw {pid}'s role"
            )
        if "voter_id" in view and view.get("action") in ("kill", "protect", "investigate"):
            voter = view["voter_id"]
            assert voter == viewer or (view["action"] == "kill" and in_mafia), f"{viewer} saw a night vote"
        if "detective_id" in view:
            assert view["detective_id"] == viewer, f"{viewer} saw an investigation"
        if view.get("phase") == "night" and view.get("tally") is not None:
            assert in_mafia, f"{viewer} saw the night tally"
        for value in view.values():
            self.check_view(viewer, value, dead)


class Bot:
    """A player on their own SSE stream: votes when the phase lets them, the host advances the day."""

    def __init__(
        self, http: httpx.AsyncClient, base: str, room_id: str, seat: Seat, host: bool, seed: int
    ) -> None:
        self.http, self.base, self.room_id, self.seat, self.host = http, base, room_id, seat, host
        self.rng = random.Random(seed)
        self.seen: list[dict[str, Any]] = []
        self.views: list[tuple[int, Any]] = []
        self.ready = asyncio.Event()
        self.role: str | None = None
        self.teammates: set[str] = set()
        self.alive: set[str] = set()
        self.winner: str | None = None

    async def run(self) -> str:
        url = f"{self.base}/v1/rooms/{self.room_id}/events"
        async with sse_stream(self.http, url, self.seat.token) as response:
            events = sse_events(response)
            async for event in events:
                payload = check_envelope(event)
                self.seen.append(payload)
                if await self.react(payload):
                    assert self.winner is not None
                    return self.winner
        raise AssertionError("the stream ended before the game")

    async def react(self, payload: dict[str, Any]) -> bool:
        kind, data = payload["type"], payload["data"]
        if kind == "snapshot":
            self.alive = {p["id"] for p in data["players"] if p["alive"]}
            self.ready.set()
        elif kind == "role.assigned":
            self.role, self.teammates = data["role"], set(data["teammates"])
        elif kind == "player.eliminated":
            self.alive.discard(data["player_id"])
        elif kind == "game.finished":
            self.winner = data["winner"]
            return True
        elif kind == "phase.started":
            await self.look(data["round"])
            await self.act(data["round"], data["phase"])
        return False

    async def look(self, round_: int) -> None:
        """Read the rounds, then the state, as the game runs, for the no-leak check.

        Each pair is judged later against the log up to the state's `last_seq`: a player
        eliminated by then is dead in both answers (the rounds were read first), and nobody
        else's role may show. The bot's own stream may lag behind what the server answers,
        so its idea of who is dead would wrongly flag a death revealed a moment ago. Once the
        game is over everything is public, so both answers count only when the state still
        shows the game running.
        """
        answers = []
        for path in ("rounds", "state"):
            answer = await self.http.get(
                f"{self.base}/v1/rooms/{self.room_id}/{path}", headers=self.seat.auth
            )
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
        if answers[-1]["room"]["status"] != "finished":
            self.views.extend((answers[-1]["last_seq"], body) for body in answers)

    async def act(self, round_: int, phase: str) -> None:
        me = self.seat.id
        if phase == "day":
            if self.host:
                await self.http.post(
                    f"{self.base}/v1/rooms/{self.room_id}/advance",
                    headers=self.seat.auth,
                    json={"round": round_, "phase": "day"},
                )
            return
        if me not in self.alive or (phase == "night" and self.role not in NIGHT_ACTION):
            return
        if phase == "night" and self.role == "mafia":
            options = sorted(self.alive - self.teammates - {me})
        elif phase == "night" and self.role == "doctor":
            options = sorted(self.alive)
        else:
            options = sorted(self.alive - {me})
        target = self.rng.choice(options) if options and self.rng.random() < 0.9 else None
        answer = await self.http.post(
            f"{self.base}/v1/rooms/{self.room_id}/votes",
            headers=self.seat.auth,
            json={"target_player_id": target, "round": round_, "phase": phase},
        )
        assert answer.status_code in (201, 409), answer.text


async def play_with_bots(base: str, players: int, seed: int) -> tuple[str, list[Seat], list[Bot], str]:
    """Fill a room with bots on SSE streams, start it, and let them play to the end."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        room_id, seats = await new_room(http, players, night_seconds=30, day_seconds=30, vote_seconds=30)
        bots = [Bot(http, base, room_id, seat, i == 0, seed * 100 + i) for i, seat in enumerate(seats)]
        tasks = [asyncio.create_task(bot.run()) for bot in bots]
        await asyncio.wait_for(asyncio.gather(*(b.ready.wait() for b in bots)), 20)
        await start(http, room_id, seats)
        winners = await asyncio.wait_for(asyncio.gather(*tasks), 240)
        assert len(set(winners)) == 1
        return room_id, seats, bots, winners[0]


async def test_bots_play_six_and_twelve_player_games_to_the_end_and_the_log_replays_them(
    server_url: str, database_url: str
) -> None:
    """Bots on SSE streams finish a game; nobody was shown a secret; the log alone replays the game."""
    for players, seed in ((6, 1), (12, 2)):
        room_id, seats, bots, winner = await play_with_bots(server_url, players, seed)
        log = await room_log(database_url, room_id)
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
        finished = log[-1]
        assert finished["type"] == "game.finished"
        assert finished["data"]["winner"] == winner
        truth = Truth({p["id"]: p["role"] for p in finished["data"]["players"]})
        # Hidden information: live events, snapshots, state and rounds while the game ran.
        for bot in bots:
            for event in bot.seen:
                if event["type"] == "game.finished":
                    break
                truth.check_event(bot.seat.id, event)
            for last_seq, view in bot.views:
                dead = {e["data"]["player_id"] for e in log[:last_seq] if e["type"] == "player.eliminated"}
                truth.check_view(bot.seat.id, view, dead)
        # The replay goes through the same rule as the live stream.
        async with httpx.AsyncClient(base_url=server_url, timeout=30) as http:
            for seat in seats:
                replayed = []
                async with sse_stream(http, f"/v1/rooms/{room_id}/events", seat.token, after=0) as response:
                    async for received in sse_events(response):
                        replayed.append(check_envelope(received))
                        if received.event == "game.finished":
                            break
                live = [e for e in next(b for b in bots if b.seat is seat).seen if e["type"] != "snapshot"]
                # Exactly what the player may see, live and replayed alike: their own events, their
                # team's (dealt after their stream opened), the room's; nothing twice, nothing missed.
                team = "mafia" if seat.id in truth.mafia else "town"
                mine = [
                    e["seq"]
                    for e in log
                    if e["visibility"] == "room"
                    or (e["visibility"] == "player" and e["audience"] == seat.id)
                    or (e["visibility"] == "team" and e["audience"] == team)
                ]
                assert [e["seq"] for e in replayed] == mine
                assert [e["seq"] for e in live] == [q for q in mine if q >= live[0]["seq"]]
                for event in replayed[:-1]:
                    truth.check_event(seat.id, event)
            final = await state(http, room_id, seats[0])
        # The log replayed from seq 1 reproduces the final state.
        told = replay(log)
        assert told.status == final["room"]["status"] == "finished"
        assert told.winner == final["room"]["winner"] == winner
        assert told.round == final["room"]["round"]
        assert [(p.id, p.role, p.team, p.alive) for p in told.players] == [
            (p["id"], p["role"], p["team"], p["alive"]) for p in final["players"]
        ]


async def test_votes_racing_the_deadline_make_exactly_one_transition(
    client: httpx.AsyncClient, app: Any
) -> None:
    """Twelve players vote as the deadline fires: one transition, each vote counted once, no gap."""
    mixed = 0
    for _ in range(3):
        room_id, seats = await new_room(client, 12, vote_seconds=1)
        await start(client, room_id, seats)
        host = seats[0]
        await client.post(
            f"/v1/rooms/{room_id}/advance", headers=host.auth, json={"round": 1, "phase": "night"}
        )
        await client.post(
            f"/v1/rooms/{room_id}/advance", headers=host.auth, json={"round": 1, "phase": "day"}
        )
        view = await state(client, room_id, host)
        assert view["room"]["phase"] == "vote"
        alive = [p["id"] for p in view["players"] if p["alive"]]
        ends_at = datetime.fromisoformat(view["room"]["phase_ends_at"]).timestamp()
        voters = [s for s in seats if s.id in alive]

        async def cast(
            i: int, seat: Seat, ends_at: float = ends_at, alive: list[str] = alive, room_id: str = room_id
        ) -> httpx.Response:
            # Spread over the deadline: some land before it, some as it fires, some after.
            await asyncio.sleep(max(0.0, ends_at - time.time() - 0.08 + 0.01 * i))
            target = alive[(i + 1) % len(alive)] if i % 3 else None
            body = {"target_player_id": target, "round": 1, "phase": "vote"}
            return await client.post(f"/v1/rooms/{room_id}/votes", headers=seat.auth, json=body)

        answers = await asyncio.gather(*(cast(i, s) for i, s in enumerate(voters)))
        assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
        accepted = sum(a.status_code == 201 for a in answers)
        refused = [a.json()["code"] for a in answers if a.status_code == 409]
        assert set(refused) <= {"phase_closed"}
        mixed += 0 < accepted < len(answers)
        for _ in range(100):
            if (await state(client, room_id, host))["room"]["phase"] != "vote":
                break
            await asyncio.sleep(0.05)
        db = app.state.db
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT seq, type, data FROM room_events WHERE room_id = :r ORDER BY seq"),
                {"r": room_id},
            )
            log = [dict(r._mapping) for r in rows]
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
        closed = [e for e in log if e["type"] == "vote.closed" and e["data"]["phase"] == "vote"]
        assert len(closed) == 1
        assert sum(t["votes"] for t in closed[0]["data"]["tally"]) == accepted
        cast_events = [e for e in log if e["type"] == "vote.cast" and e["data"]["phase"] == "vote"]
        assert len(cast_events) == accepted
        nights = [e for e in log if e["type"] == "phase.started" and e["data"]["round"] == 2]
        assert len(nights) <= 1
    # The race really happened: some votes beat the deadline and some did not.
    assert mixed > 0


def test_a_deadline_that_passed_while_the_server_was_down_fires_once_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    """kill -9 mid-phase; restart after the deadline: the phase closes once and the client resumes."""

    async def scenario() -> None:
        log = tmp_path / "server.log"
        with serve(database_url, log) as first:
            async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
                room_id, seats = await new_room(http, 5, night_seconds=2, day_seconds=600)
                await start(http, room_id, seats)
                seen: list[dict[str, Any]] = []
                async with sse_stream(
                    http, f"/v1/rooms/{room_id}/events", seats[1].token, after=0
                ) as response:
                    async for event in sse_events(response):
                        seen.append(check_envelope(event))
                        if event.event == "phase.started":
                            break
            first.kill()
        await asyncio.sleep(2.5)  # the night's deadline passes while nobody serves
        with serve(database_url, log) as second:
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
                for _ in range(100):
                    view = await state(http, room_id, seats[1])
                    if view["room"]["phase"] == "day":
                        break
                    await asyncio.sleep(0.05)
                assert view["room"]["phase"] == "day"
                resumed: list[dict[str, Any]] = []
                async with sse_stream(
                    http, f"/v1/rooms/{room_id}/events", seats[1].token, after=seen[-1]["seq"]
                ) as response:
                    async for event in sse_events(response):
                        resumed.append(check_envelope(event))
                        if event.event == "phase.started":
                            break
        full = await room_log(database_url, room_id)
        days = [e for e in full if e["type"] == "phase.started" and e["data"]["phase"] == "day"]
        assert len(days) == 1
        assert sum(e["type"] == "vote.closed" for e in full) == 1
        team = "mafia" if seats[1].role == "mafia" else "town"
        # Up to the day opening (a player's options.changed may follow it, unread here).
        visible = [
            e["seq"]
            for e in full
            if (
                e["visibility"] == "room"
                or (e["visibility"] == "player" and e["audience"] == seats[1].id)
                or (e["visibility"] == "team" and e["audience"] == team)
            )
            and e["seq"] <= resumed[-1]["seq"]
        ]
        assert [e["seq"] for e in seen + resumed] == visible

    asyncio.run(scenario())


def test_two_servers_fire_each_deadline_once(database_url: str, tmp_path: Path) -> None:
    """Both servers poll for deadlines; every phase opens exactly once, in order."""

    async def scenario() -> None:
        fast = {"SCHEDULER_SECONDS": "0.05"}
        with (
            serve(database_url, tmp_path / "a.log", fast) as a,
            serve(database_url, tmp_path / "b.log", fast),
        ):
            async with httpx.AsyncClient(base_url=a.url, timeout=30) as http:
                room_id, seats = await new_room(http, 4, night_seconds=1, day_seconds=1, vote_seconds=1)
                await start(http, room_id, seats)
                await asyncio.sleep(7.5)
        full = await room_log(database_url, room_id)
        opened = [(e["data"]["round"], e["data"]["phase"]) for e in full if e["type"] == "phase.started"]
        cycle = ["night", "day", "vote"]
        expected = [(1 + i // 3, cycle[i % 3]) for i in range(len(opened))]
        assert len(opened) >= 6
        assert opened == expected
        assert len(set(opened)) == len(opened)
        for name in ("a.log", "b.log"):
            assert "Traceback" not in (tmp_path / name).read_text()

    asyncio.run(scenario())


async def test_a_vote_over_the_websocket_is_acked_with_its_seq_or_refused_with_a_code(
    server_url: str, database_url: str
) -> None:
    """The WebSocket `vote` command does what POST /votes does, answered by request_id."""
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as http:
        room_id, seats = await new_room(http, 4)
        await start(http, room_id, seats)
    mafia_seat = next(s for s in seats if s.role == "mafia")
    citizen = next(s for s in seats if s.role == "citizen")
    ws_url = server_url.replace("http://", "ws://") + f"/v1/rooms/{room_id}/ws"
    replies: dict[str, dict[str, Any]] = {}
    async with ws_connect(ws_url, additional_headers=mafia_seat.auth) as ws:
        await ws.send(json.dumps({"type": "vote", "request_id": "bad", "target_player_id": mafia_seat.id}))
        vote = {
            "type": "vote",
            "request_id": "good",
            "target_player_id": citizen.id,
            "round": 1,
            "phase": "night",
        }
        await ws.send(json.dumps(vote))
        while len(replies) < 2:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] in ("ack", "error"):
                reply = events.SocketAck if message["type"] == "ack" else events.SocketError
                reply.model_validate(message)
                replies[message["request_id"]] = message
    assert replies["bad"]["type"] == "error"
    assert replies["bad"]["code"] == "invalid_target"
    assert replies["good"]["type"] == "ack"
    log = await room_log(database_url, room_id)
    cast = next(e for e in log if e["seq"] == replies["good"]["seq"])
    assert cast["type"] == "vote.cast"
    assert cast["data"]["voter_id"] == mafia_seat.id
    assert cast["data"]["target_player_id"] == citizen.id
