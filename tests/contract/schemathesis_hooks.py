"""Schemathesis hooks: authenticate member calls with a token that belongs to the room in the path.

Create and join answer with a token; we remember it per room, so stateful sequences
(create -> state/patch/leave) act as that room's player. Other cases use the host token
of a room made once per run, which is a real token from another room (403 by design).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import schemathesis

TOKENS: dict[str, str] = {}
_fallback: list[str] = []


def _fallback_token() -> str:
    if not _fallback:
        base = os.environ["ROUNDTABLE_URL"]
        body = {"name": "schemathesis", "nickname": "fuzzer", "ruleset": "mafia"}
        _fallback.append(httpx.post(f"{base}/v1/rooms", json=body, timeout=10).json()["token"])
    return _fallback[0]


@schemathesis.hook
def after_call(ctx: Any, case: Any, response: Any) -> None:
    """Remember the token a create or join answered with, under its room."""
    if response.status_code == 201:
        body = response.json()
        if "token" in body:
            TOKENS[body["room"]["id"]] = body["token"]


@schemathesis.auth(refresh_interval=None)
class RoomToken:
    """Bearer token of a player of the case's room when we know one."""

    def get(self, case: Any, ctx: Any) -> str:
        return _fallback_token()

    def set(self, case: Any, data: str, ctx: Any) -> None:
        room_id = str((case.path_parameters or {}).get("room_id"))
        token = TOKENS.get(room_id, data)
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
