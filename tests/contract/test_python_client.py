"""The generated Python client, over the generated models, against the real server."""

from __future__ import annotations

import pytest
from roundtable.contract import api
from roundtable_client import AsyncClient
from roundtable_client.errors import ConflictError, PermissionDeniedError


async def test_the_generated_client_creates_joins_and_reads_state(server_url: str) -> None:
    async with AsyncClient(base_url=server_url) as anonymous:
        session = await anonymous.rooms.create_room(
            body=api.CreateMafiaRoomRequest(name="SDK night", nickname="Ada", ruleset="mafia")
        )
        assert isinstance(session, api.RoomSession)
        room_id = session.room.id
        joined = await anonymous.players.join_room(
            room_id=room_id, body=api.JoinRoomRequest(nickname="Grace")
        )
        assert joined.player.seat == 2
        with pytest.raises(ConflictError) as taken:
            await anonymous.players.join_room(room_id=room_id, body=api.JoinRoomRequest(nickname="ada"))
        assert isinstance(taken.value.body, api.Problem)
        assert taken.value.body.code == "nickname_taken"

    async with AsyncClient(base_url=server_url, bearer_auth=joined.token) as grace:
        state = await grace.rooms.get_room_state(room_id=room_id)
        assert isinstance(state, api.RoomState)
        assert state.me is not None
        assert state.me.nickname == "Grace"
        assert [p.nickname for p in state.players] == ["Ada", "Grace"]
        with pytest.raises(PermissionDeniedError) as refused:
            await grace.rooms.update_room(room_id=room_id, body=api.UpdateRoomRequest(name="Mine"))
        assert isinstance(refused.value.body, api.Problem)
        assert refused.value.body.code == "not_host"
