"""The Python SDK's hand-written layer against a real server: sessions, typed errors, resuming streams."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from roundtable import (
    Bot,
    Conflict,
    Forbidden,
    GameNotFinished,
    GameNotFound,
    RandomStrategy,
    RoomSession,
    RoundtableError,
    Spectating,
)
from roundtable.contract import api, events
from roundtable.session import jittered


async def test_a_session_creates_joins_by_code_and_raises_typed_errors(server_url: str) -> None:
    """Create, join by code, and problem responses as exceptions carrying their code."""
    host = await RoomSession.create(server_url, name="SDK", nickname="Ada")
    async with host:
        guest = await RoomSession.join(server_url, nickname="Bo", code=host.room.code)
        async with guest:
            assert guest.room_id == host.room_id
            with pytest.raises(Conflict) as taken:
                await RoomSession.join(server_url, nickname="ada", room_id=host.room_id)
            assert taken.value.code == "nickname_taken"
            assert taken.value.status == 409
            with pytest.raises(Forbidden) as refused:
                await guest.start()
            assert refused.value.code == "not_host"
            state = await guest.state()
            assert isinstance(state, api.RoomState)
            assert [p.nickname for p in state.players] == ["Ada", "Bo"]


async def test_events_are_typed_and_resume_where_the_last_stream_stopped(server_url: str) -> None:
    """A snapshot first, typed events after; a new iteration resumes after the last seq, once each."""
    async with await RoomSession.create(server_url, name="SDK", nickname="Ada") as host:
        stream = host.events()
        first = await anext(stream)
        assert isinstance(first, events.Snapshot)
        await host.chat("one")
        said = await anext(stream)
        assert isinstance(said, events.ChatMessageEvent)
        assert said.data.text == "one"
        await stream.aclose()  # the connection is gone; the session remembers the seq
        await host.chat("two")
        await host.chat("three")
        resumed = host.events()
        texts = []
        for _ in range(2):
            event = await asyncio.wait_for(anext(resumed), 10)
            assert isinstance(event, events.ChatMessageEvent)
            texts.append(event.data.text)
        await resumed.aclose()
        assert texts == ["two", "three"]


async def test_the_socket_sends_commands_and_awaits_their_answer(server_url: str) -> None:
    """Over the WebSocket a chat is acked with its seq; a refused command raises with its code."""
    host = await RoomSession.create(server_url, name="SDK", nickname="Ada")
    async with host, host.socket() as socket:
        snapshot = await anext(socket)
        assert isinstance(snapshot, events.Snapshot)
        ack = await socket.chat("over the socket")
        assert ack.seq is not None
        heard = await anext(socket)
        assert isinstance(heard, events.ChatMessageEvent)
        assert heard.seq == ack.seq
        with pytest.raises(RoundtableError) as refused:
            await socket.vote(None)
        assert refused.value.code == "game_not_in_progress"


def test_reconnect_delays_are_spread_so_clients_do_not_return_in_lockstep() -> None:
    """Every client of a crashed server waits a different time before it reconnects, between
    half the backoff and all of it."""
    delays = [jittered(2.0) for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in delays)
    assert max(delays) - min(delays) > 0.5


async def test_act_takes_a_listed_option_over_http_and_the_socket_and_options_follow_the_stream(
    server_url: str,
) -> None:
    """`act` posts /actions (also as a dict, also over the socket); the session's `options` are the
    state's and then each `options.changed` of its own; an action of another game is refused."""
    host = await RoomSession.create(server_url, name="SDK acts", nickname="Ada", ruleset="mafia")
    guests = [
        await RoomSession.join(server_url, nickname=n, room_id=host.room_id) for n in ("Bo", "Cy", "Di")
    ]
    async with host:
        stream = host.events()
        snapshot = await anext(stream)
        assert isinstance(snapshot, events.Snapshot)
        assert snapshot.data.options == [] == host.options
        await host.start()
        await host.advance()  # night closes: nobody died
        await host.advance()  # day closes: the vote opens
        while True:
            event = await asyncio.wait_for(anext(stream), 10)
            if isinstance(event, events.OptionsChangedEvent) and any(
                o.vote_action is api.VoteAction.eliminate for o in event.data.options
            ):
                break
        assert event.data.player_id == host.player_id
        assert host.options == event.data.options
        [offer] = host.options
        assert (offer.type, offer.vote_action, offer.pick, offer.abstain) == (
            api.ActionType.vote,
            api.VoteAction.eliminate,
            1,
            True,
        )
        state = await guests[0].state()
        assert guests[0].options == state.options
        assert [o.type for o in state.options] == [api.ActionType.vote]

        accepted = await host.act(
            api.CastVoteAction(type="vote", target_player_id=offer.targets[0], round=1, phase=api.Phase.vote)
        )
        assert (accepted.type, accepted.round, accepted.phase) == (api.ActionType.vote, 1, api.Phase.vote)
        again = await guests[1].act({"type": "vote", "target_player_id": None})
        assert again.seq > accepted.seq
        with pytest.raises(Conflict) as refused:
            await guests[2].act({"type": "approve", "choice": "approve"})
        assert refused.value.code == "cannot_act"
        async with guests[0].socket() as socket:
            assert isinstance(await anext(socket), events.Snapshot)
            ack = await socket.act({"type": "vote", "target_player_id": str(host.player_id)})
            assert isinstance(ack.seq, int)
            assert ack.seq > again.seq
        await stream.aclose()
    for guest in guests:
        await guest.aclose()


async def test_a_session_creates_a_room_of_either_ruleset(server_url: str) -> None:
    """The ruleset by name (its defaults) or by the settings' type; settings of the other game are refused."""
    async with await RoomSession.create(server_url, name="M", nickname="Ada", ruleset="missions") as named:
        assert named.room.ruleset is api.Ruleset.missions
        assert isinstance(named.room.settings, api.MissionsSettings)
        assert named.room.settings.propose_seconds == 90
    settings = api.MissionsSettingsInput(max_players=6, propose_seconds=5)
    async with await RoomSession.create(server_url, name="M", nickname="Ada", settings=settings) as typed:
        assert typed.room.ruleset is api.Ruleset.missions
        assert isinstance(typed.room.settings, api.MissionsSettings)
        assert (typed.room.settings.max_players, typed.room.settings.propose_seconds) == (6, 5)
    async with await RoomSession.create(server_url, name="Mafia", nickname="Ada") as mafia:
        assert mafia.room.ruleset is api.Ruleset.mafia
    with pytest.raises(ValueError, match="MafiaSettingsInput"):
        await RoomSession.create(server_url, name="M", nickname="Ada", ruleset="mafia", settings=settings)


async def test_a_spectator_reads_the_public_game_and_is_refused_every_command(server_url: str) -> None:
    """`spectate` gives a session whose state has no `me` and no hidden role, whose stream
    carries only what every player sees (no role, no options, no mafia chat at night),
    and whose commands are refused with `Spectating` (403 `spectator`), over HTTP and the socket."""
    host = await RoomSession.create(server_url, name="Watched", nickname="Ada")
    guests = [
        await RoomSession.join(server_url, nickname=n, room_id=host.room_id) for n in ("Bo", "Cy", "Di")
    ]
    fan = await RoomSession.spectate(server_url, host.room_id, nickname="Fan")
    async with host, fan:
        assert fan.is_spectator
        assert not host.is_spectator
        with pytest.raises(Spectating):
            _ = fan.player_id
        stream = fan.events()
        snapshot = await asyncio.wait_for(anext(stream), 10)
        assert isinstance(snapshot, events.Snapshot)
        assert snapshot.data.me is None
        assert snapshot.data.options == []

        await host.start()
        state = await fan.state()
        assert state.me is None
        assert state.room.status is api.RoomStatus.in_progress
        assert [p.nickname for p in state.players] == ["Ada", "Bo", "Cy", "Di"]
        assert all(p.role is None for p in state.players)  # nobody's role is public yet

        for player in [host, *guests]:
            me = (await player.state()).me
            if me is not None and me.team is api.Team.mafia:
                await player.chat("the plan")  # at night: to the mafia only
                break
        await host.advance()  # night closes; day opens
        await host.chat("good morning")

        seen: list[events.RoomEvent] = []
        while True:
            item = await asyncio.wait_for(anext(stream), 10)
            assert not isinstance(item, events.Snapshot)
            seen.append(item)
            if isinstance(item, events.ChatMessageEvent) and item.data.text == "good morning":
                break
        await stream.aclose()
        kinds = {e.type for e in seen}
        assert {"game.started", "phase.started"} <= kinds
        assert not kinds & {"role.assigned", "options.changed"}
        said = [e.data.text for e in seen if isinstance(e, events.ChatMessageEvent)]
        assert said == ["good morning"]

        with pytest.raises(Spectating) as refused:
            await fan.chat("hello from the stands")
        assert (refused.value.status, refused.value.code) == (403, "spectator")
        with pytest.raises(Spectating):
            await fan.act({"type": "vote", "target_player_id": None})
        with pytest.raises(Spectating):
            await fan.vote(None)
        async with fan.socket() as socket:
            with pytest.raises(Spectating):
                await socket.chat("over the socket")
            assert (await socket.ping()).request_id is not None
        assert isinstance((await fan.rounds()).rounds, list)
    for guest in guests:
        await guest.aclose()


async def test_quick_join_seats_two_callers_in_one_lobby(server_url: str) -> None:
    """Two quick joins of a ruleset, one after the other, end up in the same public lobby."""
    first = await RoomSession.quick_join(server_url, "missions", f"Q{uuid.uuid4().hex[:6]}")
    second = await RoomSession.quick_join(server_url, api.Ruleset.missions, f"R{uuid.uuid4().hex[:6]}")
    async with first, second:
        assert first.room.ruleset is api.Ruleset.missions
        assert second.room_id == first.room_id
        state = await second.state()
        assert state.room.status is api.RoomStatus.lobby
        assert state.me is not None
        assert state.me.id == second.player_id
        ids = {p.id for p in state.players}
        assert {first.player_id, second.player_id} <= ids


async def test_sdk_bots_play_a_rematch_with_the_roles_it_deals(server_url: str) -> None:
    """Bots playing two games: the host's bot starts the rematch; game 2 finishes; each bot
    held, at each game's end, the role that game revealed for it; both games' rounds stay
    readable and a game not played is `GameNotFound`."""
    settings = api.MafiaSettingsInput(max_players=6, night_seconds=5, day_seconds=1, vote_seconds=5)
    host = await RoomSession.create(server_url, name="Rematch", nickname="bot-1", settings=settings)
    sessions = [host] + [
        await RoomSession.join(server_url, nickname=f"bot-{i}", room_id=host.room_id) for i in range(2, 7)
    ]
    # A second stream of the host's, beside its bot's: every game.started and game.finished.
    fan = RoomSession(server_url, host.room, host.player, host.token)
    bots = [Bot(s, RandomStrategy(seed=17 + i)) for i, s in enumerate(sessions)]
    try:
        with pytest.raises(GameNotFinished):
            await host.rematch()  # no game has been played yet
        finals: list[events.GameFinishedEvent] = []
        started: list[int] = []

        async def watch() -> None:
            async for item in fan.events():
                if isinstance(item, events.GameStartedEvent):
                    started.append(item.data.room.game)
                elif isinstance(item, events.GameFinishedEvent):
                    finals.append(item)
                    if len(finals) == 2:
                        return

        watching = asyncio.create_task(watch())
        games = [asyncio.create_task(bot.run(games=2)) for bot in bots]
        await asyncio.wait_for(asyncio.gather(*(b.ready.wait() for b in bots)), 20)
        await host.start()
        await asyncio.wait_for(asyncio.gather(*games), 120)
        await asyncio.wait_for(watching, 20)

        assert started == [1, 2]
        for bot in bots:
            assert len(bot.played) == 2
            for (role, winner), final in zip(bot.played, finals, strict=True):
                revealed = {p.id: p.role for p in final.data.players}
                assert role is not None
                assert role == revealed[bot.session.player_id]
                assert winner == final.data.winner
            assert bot.view.game == 2
        state = await host.state()
        assert (state.room.game, state.room.status) == (2, api.RoomStatus.finished)
        second = await host.rounds()
        assert second.game == 2
        # Every bot game 2 woke at night acted on its first night (its round 1 is not game 1's,
        # already taken), whatever it was in game 1.
        night = next(p for p in second.rounds[0].phases if p.phase is api.Phase.night)
        woken = {
            p.id
            for p in finals[1].data.players
            if p.role in (api.Role.mafia, api.Role.doctor, api.Role.detective)
        }
        assert {v.voter_id for v in night.votes} == woken
        first = await host.rounds(game=1)
        assert first.game == 1
        assert first.rounds
        with pytest.raises(GameNotFound):
            await host.rounds(game=3)
    finally:
        for session in [*sessions, fan]:
            with contextlib.suppress(RoundtableError):
                await session.aclose()
