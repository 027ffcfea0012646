"""The Python SDK's hand-written layer against a real server: sessions, typed errors, resuming streams."""

from __future__ import annotations

import asyncio

import pytest
from roundtable import Conflict, Forbidden, RoomSession, RoundtableError
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
