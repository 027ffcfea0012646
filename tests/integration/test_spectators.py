"""Spectators (`watchRoom`): who may watch, what they see of a game as it is played (only what
every player may see, live, on replay and in /state), what they may not do, and how they are
counted. Against a server of two workers sharing a Redis, as in production."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from backend.contract import api
from tests.game_support import new_room, play_round_of_votes, start, state
from tests.integration.test_lobby import assert_problem
from tests.integration.test_missions import act_all
from tests.support import Server, check_envelope, redis_server, serve, sse_events, sse_stream

# A spectator token holds at most this many streams, like a player's.
STREAM_CAP = 3


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two workers and a Redis of the module's own: spectators are counted across workers."""
    workdir = tmp_path_factory.mktemp("spectators")
    log = workdir / "server.log"
    env = {
        "WORKERS": "2",
        "CATCHUP_SECONDS": "0.2",
        "MAX_STREAMS_PER_PLAYER": str(STREAM_CAP),
        "PRESENCE_GRACE_SECONDS": "0.5",
    }
    with redis_server(workdir) as redis, serve(database_url, log, {**env, "REDIS_URL": redis.url}) as s:
        yield s
    assert "Traceback" not in log.read_text(), log.read_text()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def watch(http: httpx.AsyncClient, room_id: str, **body: Any) -> dict[str, Any]:
    """Watch a room; return the 201 body, checked against the contract."""
    answer = await http.post(f"/v1/rooms/{room_id}/spectators", json=body)
    assert answer.status_code == 201, answer.text
    api.SpectatorSession.model_validate(answer.json())
    session: dict[str, Any] = answer.json()
    return session


async def last_seq(database_url: str, room_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        seq: int = await conn.fetchval("SELECT last_seq FROM rooms WHERE id = $1", uuid.UUID(room_id))
        return seq
    finally:
        await conn.close()


def ws_url(base: str, room_id: str, query: str = "") -> str:
    return f"{base.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws{query}"


async def test_anyone_watches_a_public_room_by_id_and_a_private_one_only_with_its_code(
    server: Server, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        room_id, seats = await new_room(http, 1)
        fan = await watch(http, room_id, nickname="  Ｆａｎ ")
        assert fan["spectator"]["nickname"] == "Fan"  # normalised as a player's is
        assert fan["room"]["id"] == room_id
        assert fan["room"]["player_count"] == 1
        assert fan["room"]["code"] is not None  # a public room's code is no secret
        quiet = await watch(http, room_id)
        assert quiet["spectator"]["nickname"] is None
        assert fan["token"] != quiet["token"]
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow(
                "SELECT room_id, token_hash FROM spectators WHERE id = $1", uuid.UUID(fan["spectator"]["id"])
            )
        finally:
            await conn.close()
        assert row is not None
        assert str(row["room_id"]) == room_id
        assert row["token_hash"] == hashlib.sha256(fan["token"].encode()).hexdigest()  # never the token

        view = (await http.get(f"/v1/rooms/{room_id}/state", headers=auth(fan["token"]))).json()
        api.RoomState.model_validate(view)
        assert view["me"] is None
        assert [p["id"] for p in view["players"]] == [seats[0].id]
        assert view["options"] == []
        assert view["teammates"] == []

        assert_problem(
            await http.post(f"/v1/rooms/{uuid.uuid4()}/spectators", json={}), 404, "room_not_found"
        )
        assert_problem(
            await http.post(f"/v1/rooms/{room_id}/spectators", json={"nickname": ""}),
            422,
            "validation_failed",
        )

        private = await http.post(
            "/v1/rooms",
            json={"name": "Hush", "nickname": "Host", "ruleset": "mafia", "settings": {"private": True}},
        )
        private_id, code = private.json()["room"]["id"], private.json()["room"]["code"]
        refused = await http.post(f"/v1/rooms/{private_id}/spectators", json={})
        assert_problem(refused, 403, "room_code_required")
        wrong = "ABCDEF" if code != "ABCDEF" else "ABCDEG"
        assert_problem(
            await http.post(f"/v1/rooms/{private_id}/spectators", json={"code": wrong}),
            403,
            "room_code_required",
        )
        invited = await watch(http, private_id, code=code)
        assert invited["room"]["code"] is None  # the summary anyone gets
        watched = await http.get(f"/v1/rooms/{private_id}/state", headers=auth(invited["token"]))
        assert watched.status_code == 200
        assert watched.json()["me"] is None

        # A closed room (its last player left) takes no spectator.
        left = await http.delete(f"/v1/rooms/{room_id}/players/{seats[0].id}", headers=auth(seats[0].token))
        assert left.status_code == 204
        assert_problem(await http.post(f"/v1/rooms/{room_id}/spectators", json={}), 409, "room_closed")


async def test_spectators_take_no_seat_and_are_counted_while_they_stream(
    server: Server, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        room_id, seats = await new_room(http, 3, max_players=4)
        before = await last_seq(database_url, room_id)
        fans = [await watch(http, room_id, nickname=f"Fan{i}") for i in range(5)]
        summary = (await http.get(f"/v1/rooms/{room_id}")).json()
        assert summary["player_count"] == 3
        assert summary["spectator_count"] == 0  # watching means having a stream open
        # The room still fills to max_players with players, and no further.
        assert await last_seq(database_url, room_id) == before  # watching writes no event
        last = await http.post(f"/v1/rooms/{room_id}/players", json={"nickname": "P4"})
        assert last.status_code == 201, last.text
        assert_problem(
            await http.post(f"/v1/rooms/{room_id}/players", json={"nickname": "P5"}), 409, "room_full"
        )
        view = await state(http, room_id, seats[0])
        spectator_ids = {f["spectator"]["id"] for f in fans}
        assert len(view["players"]) == view["room"]["player_count"] == 4
        assert not spectator_ids & {p["id"] for p in view["players"]}

        async def count() -> int:
            answer: int = (await http.get(f"/v1/rooms/{room_id}")).json()["spectator_count"]
            return answer

        async def until(expected: int) -> None:
            for _ in range(250):
                if await count() == expected:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"spectator_count stayed {await count()}, not {expected}")

        url = f"/v1/rooms/{room_id}/events"
        async with sse_stream(http, url, fans[0]["token"]) as first:
            # The parser stays referenced: collecting it would close the stream.
            first_events = sse_events(first)
            assert (await anext(first_events)).event == "snapshot"
            await until(1)
            async with ws_connect(
                ws_url(server.url, room_id), additional_headers=auth(fans[1]["token"])
            ) as ws:
                assert json.loads(await ws.recv())["type"] == "snapshot"
                await until(2)
                # A player's stream is not a spectator's.
                async with sse_stream(http, url, seats[0].token) as player:
                    player_events = sse_events(player)
                    assert (await anext(player_events)).event == "snapshot"
                    assert await count() == 2
            await until(1)
        await until(0)
        # Spectators are not players: their streams opened and closed and no presence changed;
        # the player's stream, opened and closed among theirs, shows (connected, then not).
        log: list[dict[str, Any]] = []
        for _ in range(250):
            log, _ = await room_log(database_url, room_id)
            if [e["data"].get("connected") for e in log if e["type"] == "presence.changed"] == [True, False]:
                break
            await asyncio.sleep(0.02)
        news = [(e["type"], e["data"].get("player_id") or e["data"]["player"]["id"]) for e in log[before:]]
        p4 = last.json()["player"]["id"]
        assert sorted(news) == sorted(
            [("player.joined", p4), ("presence.changed", seats[0].id), ("presence.changed", seats[0].id)]
        )


async def test_every_command_of_a_spectator_is_refused_and_writes_nothing(
    server: Server, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        room_id, seats = await new_room(http, 4)
        fan = await watch(http, room_id)
        token, me = fan["token"], fan["spectator"]["id"]
        host = seats[0]
        before = await last_seq(database_url, room_id)
        base = f"/v1/rooms/{room_id}"
        vote = {"target_player_id": None}
        lobby_commands = [
            http.post(f"{base}/start", headers=auth(token)),
            http.patch(base, headers=auth(token), json={"name": "Mine now"}),
            http.delete(f"{base}/players/{host.id}", headers=auth(token)),
            http.delete(f"{base}/players/{me}", headers=auth(token)),
            http.post(f"{base}/messages", headers=auth(token), json={"text": "hello"}),
        ]
        for refused in await asyncio.gather(*lobby_commands):
            problem = assert_problem(refused, 403, "spectator")
            assert problem["detail"] == "Spectators watch; they cannot act."
        assert await last_seq(database_url, room_id) == before

        await start(http, room_id, seats)
        before = await last_seq(database_url, room_id)
        game_commands = [
            http.post(f"{base}/advance", headers=auth(token)),
            http.post(f"{base}/actions", headers=auth(token), json={"type": "vote", **vote}),
            http.post(f"{base}/votes", headers=auth(token), json=vote),
            http.post(f"{base}/messages", headers=auth(token), json={"text": "psst"}),
            http.post(f"{base}/start", headers=auth(token)),
        ]
        for refused in await asyncio.gather(*game_commands):
            assert_problem(refused, 403, "spectator")

        # Over the WebSocket: each command gets an error, a ping its ack, the socket stays open.
        async with ws_connect(ws_url(server.url, room_id), additional_headers=auth(token)) as ws:
            snapshot = check_envelope(json.loads(await ws.recv()))
            assert snapshot["type"] == "snapshot"
            assert snapshot["data"]["me"] is None
            commands = [
                {"type": "ping", "request_id": "p1"},
                {"type": "chat", "request_id": "c1", "text": "hi"},
                {"type": "vote", "request_id": "v1", "target_player_id": None},
                {"type": "action", "request_id": "a1", "action": {"type": "vote", "target_player_id": None}},
                {"type": "ping", "request_id": "p2"},
            ]
            for command in commands:
                await ws.send(json.dumps(command))
            replies: dict[str, dict[str, Any]] = {}
            while len(replies) < len(commands):
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert message["type"] in ("ack", "error"), message  # no event: nothing was written
                replies[message["request_id"]] = message
        assert replies["p1"] == {"type": "ack", "request_id": "p1"}
        assert replies["p2"] == {"type": "ack", "request_id": "p2"}
        for request_id in ("c1", "v1", "a1"):
            assert replies[request_id]["type"] == "error"
            assert replies[request_id]["code"] == "spectator"
        assert await last_seq(database_url, room_id) == before

        # Another room's spectator is no member here; a spectator's token reads only its room.
        other_id, _ = await new_room(http, 1)
        other = await watch(http, other_id)
        assert_problem(await http.get(f"{base}/state", headers=auth(other["token"])), 403, "not_a_member")
        assert_problem(
            await http.post(f"{base}/messages", headers=auth(other["token"]), json={"text": "x"}),
            403,
            "not_a_member",
        )
        assert_problem(
            await http.post(f"{base}/messages", headers=auth("no-such-token"), json={"text": "x"}),
            401,
            "unauthorized",
        )


async def test_a_spectator_opens_streams_with_tickets_up_to_the_cap(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        room_id, _ = await new_room(http, 1)
        fan = await watch(http, room_id)
        issued = await http.post(f"/v1/rooms/{room_id}/stream-tickets", headers=auth(fan["token"]))
        assert issued.status_code == 201, issued.text
        ticket = issued.json()["ticket"]
        async with ws_connect(ws_url(server.url, room_id, f"?ticket={ticket}")) as ws:
            snapshot = json.loads(await ws.recv())
            assert snapshot["type"] == "snapshot"
            assert snapshot["data"]["me"] is None

        url = f"/v1/rooms/{room_id}/events"
        async with (
            sse_stream(http, url, fan["token"]) as a,
            sse_stream(http, url, fan["token"]) as b,
            sse_stream(http, url, fan["token"]) as c,
        ):
            parsers = [sse_events(response) for response in (a, b, c)]  # referenced: kept open
            for parser in parsers:
                assert (await anext(parser)).event == "snapshot"
            over = await http.get(url, headers=auth(fan["token"]))
            problem = assert_problem(over, 429, "too_many_streams")
            assert problem["status"] == 429
            assert over.headers["Retry-After"]
        # Given back when they close (counted across workers: wait for it).
        for _ in range(250):
            async with http.stream("GET", url, headers=auth(fan["token"])) as again:
                if again.status_code == 200:
                    break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the spectator's streams were not given back")


class Watcher:
    """A spectator on one stream (SSE or WebSocket) who keeps every message until the game ends."""

    def __init__(self, base: str, room_id: str, token: str, transport: str) -> None:
        self.base, self.room_id, self.token, self.transport = base, room_id, token, transport
        self.seen: list[dict[str, Any]] = []
        self.ready = asyncio.Event()

    def take(self, payload: dict[str, Any]) -> bool:
        self.seen.append(check_envelope(payload))
        self.ready.set()
        return bool(payload["type"] == "game.finished")

    async def run(self) -> None:
        if self.transport == "sse":
            async with (
                httpx.AsyncClient(base_url=self.base, timeout=60) as http,
                sse_stream(http, f"/v1/rooms/{self.room_id}/events", self.token) as response,
            ):
                async for event in sse_events(response):
                    if self.take(event.data):
                        return
        else:
            async with ws_connect(ws_url(self.base, self.room_id), additional_headers=auth(self.token)) as ws:
                async for raw in ws:
                    if self.take(json.loads(raw)):
                        return
        raise AssertionError("the stream ended before the game")


async def room_log(database_url: str, room_id: str) -> tuple[list[dict[str, Any]], set[tuple[Any, ...]]]:
    """Return the room's whole log and the public votes' (round, phase, action, voter)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT seq, type, data, visibility, audience FROM room_events WHERE room_id = $1 ORDER BY seq",
            uuid.UUID(room_id),
        )
        votes = await conn.fetch(
            "SELECT round, phase, action, voter_id FROM votes WHERE room_id = $1 AND visibility = 'room'",
            uuid.UUID(room_id),
        )
    finally:
        await conn.close()
    log = [{**dict(r), "data": json.loads(r["data"])} for r in rows]
    return log, {(v["round"], v["phase"], v["action"], str(v["voter_id"])) for v in votes}


@pytest.mark.parametrize("ruleset", ["mafia", "missions"])
async def test_spectators_see_exactly_the_public_part_of_a_whole_game(
    server: Server, database_url: str, ruleset: str
) -> None:
    """A game played to the end with a spectator on SSE and one on a WebSocket, and a third
    reading /state as it goes: they receive every event whose audience is the room, in order,
    and nothing else (no role, no team chat, no sealed or secret vote), and the replay from
    seq 0 is the same; /state shows no role before the game reveals it."""
    rng = random.Random(17)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        room_id, seats = await new_room(http, 6, ruleset=ruleset)
        on_sse, on_ws, reader = [await watch(http, room_id, nickname=f"Fan{i}") for i in range(3)]
        watchers = [
            Watcher(server.url, room_id, on_sse["token"], "sse"),
            Watcher(server.url, room_id, on_ws["token"], "ws"),
        ]
        tasks = [asyncio.create_task(w.run()) for w in watchers]
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in watchers)), 20)
        views: list[dict[str, Any]] = []

        async def look() -> dict[str, Any]:
            answer = await http.get(f"/v1/rooms/{room_id}/state", headers=auth(reader["token"]))
            assert answer.status_code == 200, answer.text
            views.append(answer.json())
            room: dict[str, Any] = answer.json()["room"]
            return room

        await look()
        await start(http, room_id, seats)
        mafia = [s for s in seats if s.role == "mafia"]
        for _ in range(300):
            room = await look()
            if room["status"] == "finished":
                break
            if ruleset == "mafia" and room["phase"] == "night":
                # The mafia's own channel at night: never the spectators'.
                said = await http.post(
                    f"/v1/rooms/{room_id}/messages", headers=mafia[0].auth, json={"text": "psst"}
                )
                assert said.status_code in (201, 403, 409), said.text
            else:
                for seat in seats:  # the room's channel, from whoever is still alive to talk
                    said = await http.post(
                        f"/v1/rooms/{room_id}/messages", headers=seat.auth, json={"text": "hi"}
                    )
                    if said.status_code == 201:
                        break
            if ruleset == "mafia":
                await play_round_of_votes(http, room_id, seats, rng)
            else:
                await act_all(http, room_id, seats, rng)
        assert room["status"] == "finished"
        await asyncio.wait_for(asyncio.gather(*tasks), 30)

        log, public_votes = await room_log(database_url, room_id)
        finished = next(e["seq"] for e in log if e["type"] == "game.finished")
        public = [e["seq"] for e in log if e["visibility"] == "room" and e["seq"] <= finished]
        assert len(public) < finished  # the game had secrets to keep
        assert any(e["type"] == "role.assigned" for e in log)
        for watcher in watchers:
            snapshot, *received = watcher.seen
            assert snapshot["type"] == "snapshot"
            assert snapshot["data"]["me"] is None
            after = snapshot["data"]["last_seq"]
            # Every public event after the snapshot, in order, once; nothing else.
            assert [e["seq"] for e in received] == [s for s in public if s > after], watcher.transport
        assert any(e["type"] == "chat.message" for e in watchers[0].seen)

        replay = []
        async with sse_stream(http, f"/v1/rooms/{room_id}/events", on_sse["token"], after=0) as response:
            async for event in sse_events(response):
                replay.append(check_envelope(event)["seq"])
                if event.event == "game.finished":
                    break
        assert replay == public

        # /state as the game ran: no role before the log revealed it, no secret vote, no options.
        roles = {
            p["id"]: p["role"]
            for p in next(e for e in log if e["type"] == "game.finished")["data"]["players"]
        }
        for view in views:
            api.RoomState.model_validate(view)
            assert view["me"] is None
            assert view["teammates"] == []
            assert view["options"] == []
            seq = view["last_seq"]
            revealed = {
                e["data"]["player_id"]
                for e in log
                if e["seq"] <= seq and e["type"] == "player.eliminated" and e["data"].get("role")
            }
            over = view["room"]["status"] == "finished"
            for player in view["players"]:
                if player["role"] is not None:
                    assert over or player["id"] in revealed, f"a role shown at seq {seq}"
                    assert player["role"] == roles[player["id"]]
                else:
                    assert not over
            for vote in view["votes"]:
                key = (vote["round"], vote["phase"], vote["action"], vote["voter_id"])
                assert key in public_votes, f"a vote not every player may see: {vote}"
        assert views[-1]["room"]["status"] == "finished"
