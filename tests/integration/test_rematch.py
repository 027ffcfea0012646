"""Rematch: another game in the same room, delivered on the streams already open, each game's
rounds, votes and results its own, each player's team the one the new game deals."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from backend.core.database_url import to_async_url
from backend.core.db import Database
from backend.core.problems import RoomNotFound
from backend.game import lifecycle, service
from backend.games.errors import GameNotFound
from backend.rooms.service import Actor
from tests.game_support import Seat, new_room, start, state
from tests.integration.test_game_live import room_log
from tests.integration.test_lobby import assert_problem
from tests.support import check_envelope, serve, sse_events, sse_stream, wait_for


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("rematch") / "server.log"
    with serve(database_url, log, {"PRESENCE_GRACE_SECONDS": "0.5"}) as s:
        yield s
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture
async def http(server: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@dataclass
class Watch:
    """One player's SSE stream, opened once and read in the background for the whole test."""

    seat: Seat
    response: httpx.Response
    received: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for event in sse_events(self.response):
            self.received.append(check_envelope(event))

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event received after the opening snapshot."""
        return [p for p in self.received if p["type"] != "snapshot"]

    def still_the_first_stream(self) -> None:
        """The stream opened at the start is still open and read: no reconnect, one snapshot."""
        assert self.task is not None
        assert not self.task.done()
        assert not self.response.is_closed
        assert [p["type"] for p in self.received].count("snapshot") == 1
        assert self.received[0]["type"] == "snapshot"


async def watch(
    stack: AsyncExitStack, http: httpx.AsyncClient, room_id: str, seats: list[Seat]
) -> list[Watch]:
    """Open every seat's stream and wait for each snapshot."""
    watches = []
    for seat in seats:
        response = await stack.enter_async_context(
            sse_stream(http, f"/v1/rooms/{room_id}/events", seat.token)
        )
        w = Watch(seat, response)
        w.task = asyncio.create_task(w.read())
        stack.callback(w.task.cancel)
        watches.append(w)
    await wait_for(lambda: all(w.received for w in watches))
    return watches


def visible_to(log: list[dict[str, Any]], player_id: str, after: int) -> list[int]:
    """The seqs after `after` a player's stream must carry: the room's events, their own, and
    their team's as the player's latest deal (their newest role.assigned) has it."""
    team = None
    seqs = []
    for e in log:
        if e["type"] == "role.assigned" and e["data"]["player_id"] == player_id:
            team = e["data"]["team"]
        visibility, audience = e["visibility"], e["audience"]
        if (
            visibility == "room"
            or (visibility == "team" and audience == team)
            or (visibility == "player" and audience == player_id)
        ) and e["seq"] > after:
            seqs.append(e["seq"])
    return seqs


async def streams_carry_what_each_may_see(database_url: str, room_id: str, watches: list[Watch]) -> None:
    """Wait until every stream has carried the log so far, then check it carried exactly what its
    player may see, gapless and in order, and nothing else."""
    log = await room_log(database_url, room_id)
    last = log[-1]["seq"]
    expected = {w.seat.id: visible_to(log, w.seat.id, w.received[0]["data"]["last_seq"]) for w in watches}

    def caught_up() -> bool:
        return all(
            {e["seq"] for e in w.events} >= set(expected[w.seat.id]) for w in watches if expected[w.seat.id]
        )

    await wait_for(caught_up)
    for w in watches:
        assert [e["seq"] for e in w.events if e["seq"] <= last] == expected[w.seat.id], w.seat.nickname


async def learn_roles(http: httpx.AsyncClient, room_id: str, seats: list[Seat]) -> None:
    for seat in seats:
        seat.role = (await state(http, room_id, seat))["me"]["role"]


async def vote(http: httpx.AsyncClient, room_id: str, seat: Seat, target: str, room: dict[str, Any]) -> None:
    body = {"target_player_id": target, "round": room["round"], "phase": room["phase"]}
    voted = await http.post(f"/v1/rooms/{room_id}/votes", headers=seat.auth, json=body)
    assert voted.status_code in (201, 409), voted.text


async def night_kill(http: httpx.AsyncClient, room_id: str, seats: list[Seat], room: dict[str, Any]) -> None:
    """The mafia vote to kill the last living town player who does not host."""
    view = await state(http, room_id, seats[0])
    alive = {p["id"] for p in view["players"] if p["alive"]}
    town = [s for s in seats[1:] if s.role != "mafia" and s.id in alive]
    for seat in seats:
        if seat.role == "mafia" and seat.id in alive:
            await vote(http, room_id, seat, town[-1].id, room)


async def play_to_the_end(http: httpx.AsyncClient, room_id: str, seats: list[Seat]) -> dict[str, Any]:
    """Play the game to its end quickly: the mafia kill, the doctor guards themself, the
    detective looks at the mafia, and the day's vote puts the mafia out. Return the room."""
    for _ in range(40):
        view = await state(http, room_id, seats[0])
        room: dict[str, Any] = view["room"]
        if room["status"] == "finished":
            return room
        alive = {p["id"] for p in view["players"] if p["alive"]}
        living = [s for s in seats if s.id in alive]
        mafia = [s for s in living if s.role == "mafia"]
        town = [s for s in living if s.role != "mafia"]
        if room["phase"] == "night":
            await night_kill(http, room_id, seats, room)
            for seat in town:
                if seat.role == "doctor":
                    await vote(http, room_id, seat, seat.id, room)
                elif seat.role == "detective":
                    await vote(http, room_id, seat, mafia[0].id, room)
        elif room["phase"] == "vote":
            for seat in living:
                await vote(http, room_id, seat, (town if seat.role == "mafia" else mafia)[0].id, room)
        now = (await state(http, room_id, seats[0]))["room"]
        if now["status"] == "in_progress" and (now["round"], now["phase"]) == (room["round"], room["phase"]):
            guard = {"round": room["round"], "phase": room["phase"]}
            advanced = await http.post(f"/v1/rooms/{room_id}/advance", headers=seats[0].auth, json=guard)
            assert advanced.status_code in (200, 409), advanced.text
    raise AssertionError("the game did not end")


async def rounds(
    http: httpx.AsyncClient, room_id: str, seat: Seat, game: int | None = None
) -> httpx.Response:
    params = {"game": game} if game is not None else {}
    return await http.get(f"/v1/rooms/{room_id}/rounds", headers=seat.auth, params=params)


def of_type(w: Watch, kind: str) -> list[dict[str, Any]]:
    return [e for e in w.events if e["type"] == kind]


async def rematch(http: httpx.AsyncClient, room_id: str, seat: Seat) -> httpx.Response:
    return await http.post(f"/v1/rooms/{room_id}/rematch", headers=seat.auth)


async def test_a_rematch_deals_a_new_game_on_the_streams_already_open(
    http: httpx.AsyncClient, database_url: str
) -> None:
    room_id, seats = await new_room(http, 4)
    host, guest = seats[0], seats[1]
    async with AsyncExitStack() as stack:
        watches = await watch(stack, http, room_id, seats)
        assert_problem(await rematch(http, room_id, host), 409, "game_not_finished")  # nothing played yet
        await start(http, room_id, seats)
        first_roles = {s.id: s.role for s in seats}
        assert_problem(await rematch(http, room_id, host), 409, "game_not_finished")  # still running
        finished = await play_to_the_end(http, room_id, seats)
        assert finished["winner"] is not None
        first_rounds = {s.id: (await rounds(http, room_id, s)).json() for s in seats}
        assert all(r["game"] == 1 and r["rounds"] for r in first_rounds.values())
        await wait_for(lambda: all(of_type(w, "game.finished") for w in watches))
        assert_problem(await rematch(http, room_id, guest), 403, "not_host")

        again = await rematch(http, room_id, host)
        assert again.status_code == 200, again.text
        room = again.json()
        assert (room["game"], room["status"], room["round"], room["phase"]) == (2, "in_progress", 1, "night")
        assert room["winner"] is None
        assert room["player_count"] == 4
        summary = (await http.get(f"/v1/rooms/{room_id}")).json()
        assert (summary["game"], summary["status"], summary["winner"]) == (2, "in_progress", None)
        await learn_roles(http, room_id, seats)
        # Everyone is alive again, and nobody's role is shown to another (the game 1 end showed all).
        for seat in seats:
            players = (await state(http, room_id, seat))["players"]
            assert all(p["alive"] for p in players)
            assert [p["id"] for p in players if p["role"] is not None] == [seat.id] or seat.role == "mafia"
        # The new game's night: the mafia's vote is for the mafia of this game alone (and, the
        # only night action with four players, closes the night).
        await night_kill(http, room_id, seats, room)
        await streams_carry_what_each_may_see(database_url, room_id, watches)

        for w in watches:
            w.still_the_first_stream()
            started = of_type(w, "game.started")
            assert [e["data"]["room"]["game"] for e in started] == [1, 2]
            assert started[1]["data"]["room"]["status"] == "in_progress"
            dealt = of_type(w, "role.assigned")
            assert [e["data"]["player_id"] for e in dealt] == [w.seat.id, w.seat.id]
            assert [e["data"]["role"] for e in dealt] == [first_roles[w.seat.id], w.seat.role]
            assert dealt[1]["seq"] > started[1]["seq"]
            after_rematch = [e for e in w.events if e["seq"] > started[1]["seq"]]
            # The new game opens at round 1's night; the mafia's kill, the only night action, closed it.
            phases = [
                (e["data"]["round"], e["data"]["phase"])
                for e in after_rematch
                if e["type"] == "phase.started"
            ]
            assert phases == [(1, "night"), (1, "day")]
            kills = [e for e in after_rematch if e["type"] == "vote.cast"]
            assert len(kills) == (1 if w.seat.role == "mafia" else 0), w.seat.nickname
            assert (await state(http, room_id, w.seat))["me"]["role"] == w.seat.role

        for seat in seats:
            assert (await rounds(http, room_id, seat, 1)).json() == first_rounds[seat.id]
            newest = (await rounds(http, room_id, seat)).json()
            assert (await rounds(http, room_id, seat, 2)).json() == newest
            assert newest["game"] == 2
            assert [r["round"] for r in newest["rounds"]] == [1]
            night, day = newest["rounds"][0]["phases"]
            assert (night["phase"], night["closed"], day["phase"], day["closed"]) == (
                "night",
                True,
                "day",
                False,
            )
            # Game 1's round 1 night had its kill vote too: only this game's is shown, to the mafia.
            assert len(night["votes"]) == (1 if seat.role == "mafia" else 0)
        assert_problem(await rounds(http, room_id, host, 3), 404, "game_not_found")
        assert_problem(await rounds(http, room_id, host, 0), 422, "validation_failed")
        assert_problem(await rematch(http, room_id, host), 409, "game_not_finished")


async def test_games_one_after_another_keep_their_own_votes_results_and_players(
    http: httpx.AsyncClient, database_url: str
) -> None:
    """Whole games in a row in one room: round 1 of each records its own votes and results,
    `game.finished` shows that game's votes and players only (not one who left an earlier
    game), and a player dealt into the other team in the next game sees that team's events
    and no longer the old one's (played until the mafia changed hands both ways)."""
    room_id, seats = await new_room(http, 5)
    async with AsyncExitStack() as stack:
        await start(http, room_id, seats)
        leaver = next(s for s in seats[1:] if s.role != "mafia")
        left = await http.delete(f"/v1/rooms/{room_id}/players/{leaver.id}", headers=leaver.auth)
        assert left.status_code == 204, left.text
        seats.remove(leaver)
        watches = await watch(stack, http, room_id, seats)
        mafia_by_game = {1: {s.id for s in seats if s.role == "mafia"}}
        rounds_by_game: dict[int, dict[str, Any]] = {}
        game = 1
        while True:
            await play_to_the_end(http, room_id, seats)
            rounds_by_game[game] = (await rounds(http, room_id, seats[0])).json()
            await streams_carry_what_each_may_see(database_url, room_id, watches)
            log = await room_log(database_url, room_id)
            starts = [e["seq"] for e in log if e["type"] == "game.started"]
            assert len(starts) == game
            this_game = [e for e in log if e["seq"] > starts[-1]]
            (finish,) = [e for e in this_game if e["type"] == "game.finished"]
            shown = {p["id"] for p in finish["data"]["players"]}
            assert shown == {s.id for s in seats} | ({leaver.id} if game == 1 else set())
            final: dict[tuple[int, str, str], str | None] = {}
            for e in this_game:
                if e["type"] == "vote.cast":
                    final[(e["data"]["round"], e["data"]["phase"], e["data"]["voter_id"])] = e["data"][
                        "target_player_id"
                    ]
            assert {
                (v["round"], v["phase"], v["voter_id"]): v["target_player_id"]
                for v in finish["data"]["votes"]
            } == final
            assert len(finish["data"]["votes"]) == len(final)
            switched = game > 1 and mafia_by_game[game] != mafia_by_game[game - 1]
            if switched or game == 8:
                break
            again = await rematch(http, room_id, seats[0])
            assert again.status_code == 200, again.text
            game += 1
            assert again.json()["game"] == game
            await learn_roles(http, room_id, seats)
            assert sum(s.role == "mafia" for s in seats) == 1
            mafia_by_game[game] = {s.id for s in seats if s.role == "mafia"}
        assert switched, "the mafia never changed hands"
        for w in watches:
            w.still_the_first_stream()

    for number, expected in rounds_by_game.items():
        read = (await rounds(http, room_id, seats[0], number)).json()
        assert read == expected
        assert read["game"] == number
        assert read["rounds"][0]["round"] == 1
    engine = create_async_engine(to_async_url(database_url))
    try:
        async with engine.connect() as conn:
            role = await conn.scalar(
                text("SELECT role FROM players WHERE id = :p"), {"p": uuid.UUID(leaver.id)}
            )
            results = await conn.execute(
                text(
                    "SELECT game, count(*) FROM phase_results WHERE room_id = :r AND round = 1 GROUP BY game"
                ),
                {"r": uuid.UUID(room_id)},
            )
            per_game: dict[int, int] = {g: n for g, n in results.all()}
            votes = await conn.execute(
                text("SELECT DISTINCT game FROM votes WHERE room_id = :r ORDER BY game"),
                {"r": uuid.UUID(room_id)},
            )
            voted_in = [g for (g,) in votes.all()]
    finally:
        await engine.dispose()
    assert role is None  # undealt by the first rematch, never dealt again
    assert sorted(per_game) == list(range(1, game + 1))
    assert voted_in == list(range(1, game + 1))


async def test_a_spectator_reads_each_games_rounds_as_every_player_may(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """`list_rounds` for a spectator (no player of the room): what every player may see of the
    running game, everything but what nobody sees once it is over, each game its own."""
    room_id, seats = await new_room(client, 4)
    await start(client, room_id, seats)
    room = (await state(client, room_id, seats[0]))["room"]
    await night_kill(client, room_id, seats, room)
    mafia = next(s for s in seats if s.role == "mafia")
    db: Database = app.state.db
    watcher = Actor(uuid.uuid4(), uuid.UUID(room_id), spectator=True)

    async def watched(game: int | None = None) -> dict[str, Any]:
        async with db.snapshot() as session:
            return (await service.list_rounds(session, uuid.UUID(room_id), watcher, game)).model_dump(
                mode="json"
            )

    running = await watched()
    night = running["rounds"][0]["phases"][0]
    assert (running["game"], night["phase"], night["closed"]) == (1, "night", True)
    assert night["votes"] == []  # the mafia's kill is the mafia's
    assert night["eliminated_player_id"] is not None  # who died is public
    mafia_view = (await rounds(client, room_id, mafia)).json()
    assert len(mafia_view["rounds"][0]["phases"][0]["votes"]) == 1

    await play_to_the_end(client, room_id, seats)
    over = await watched()
    assert over == (await rounds(client, room_id, seats[1])).json()
    assert len(over["rounds"][0]["phases"][0]["votes"]) == 1
    assert (await rematch(client, room_id, seats[0])).status_code == 200
    assert await watched(1) == over
    newest = await watched()
    assert newest["game"] == 2
    assert [p["phase"] for r in newest["rounds"] for p in r["phases"]] == ["night"]
    with pytest.raises(GameNotFound):
        await watched(3)
    with pytest.raises(RoomNotFound):
        async with db.snapshot() as session:
            await service.list_rounds(session, uuid.uuid4(), watcher)


async def test_a_lobby_has_game_zero_and_no_rounds(client: httpx.AsyncClient) -> None:
    room_id, seats = await new_room(client, 2)
    listed = await rounds(client, room_id, seats[1])
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"game": 0, "rounds": []}
    assert_problem(await rounds(client, room_id, seats[1], 1), 404, "game_not_found")


async def test_a_rematch_the_players_left_cannot_fill_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Too few players left for a deal: 409 not_enough_players, and the finished game stays as
    it ended (winner, roles, game number); a closed room takes no rematch."""
    room_id, seats = await new_room(client, 4)
    await start(client, room_id, seats)
    await play_to_the_end(client, room_id, seats)
    ended = await state(client, room_id, seats[0])
    left = await client.delete(f"/v1/rooms/{room_id}/players/{seats[3].id}", headers=seats[3].auth)
    assert left.status_code == 204, left.text
    assert_problem(await rematch(client, room_id, seats[0]), 409, "not_enough_players")
    after = await state(client, room_id, seats[0])
    assert after["room"] == {**ended["room"], "player_count": 3}
    assert after["players"] == [p for p in ended["players"] if p["id"] != seats[3].id]

    db: Database = app.state.db
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE rooms SET status = 'closed' WHERE id = :r"), {"r": uuid.UUID(room_id)}
        )
    assert_problem(await rematch(client, room_id, seats[0]), 409, "room_closed")


async def test_a_rematched_room_is_not_purged_for_its_earlier_games_end(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Retention counts from the end of the room's last game: a rematch clears the end."""
    room_id, seats = await new_room(client, 4)
    await start(client, room_id, seats)
    await play_to_the_end(client, room_id, seats)
    db: Database = app.state.db
    room = uuid.UUID(room_id)
    async with db.engine.begin() as conn:
        ended = "UPDATE rooms SET ended_at = now() - interval '40 days' WHERE id = :r RETURNING ended_at"
        assert (await conn.execute(text(ended), {"r": room})).scalar() is not None
    assert (await rematch(client, room_id, seats[0])).status_code == 200
    month = lifecycle.Lifetimes(lobby_idle=1800, game_idle=900, retention=30 * 86400)
    async with db.transaction() as session:
        assert room not in [r for r, _ in await lifecycle.due_rooms(session, month)]
        assert await lifecycle.purge_rooms(session, [room], month) == 0
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT status, ended_at FROM rooms WHERE id = :r"), {"r": room})
        ).one()
    assert tuple(row) == ("in_progress", None)
