"""Schemathesis hooks: member calls authenticated as a player of their room; SSE events checked.

Create and join answer with a token; we remember it per room, so stateful sequences
(create -> state/patch/leave/events) act as that room's player. Other cases use the host token
of a room made once per run, which is a real token from another room (403 by design). The
operators' API (`/admin/`) gets the server's ADMIN_TOKEN (ROUNDTABLE_ADMIN_TOKEN).
Every event read from a stream is checked against asyncapi.yaml (EventsMatchTheAsyncAPISchema).
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import schemathesis

# jsonschema ships no type information (and types-jsonschema is not a dependency).
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from backend.docs.bundle import bundled_asyncapi

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
        if case.path.startswith("/admin/") and os.environ.get("ROUNDTABLE_ADMIN_TOKEN"):
            token = os.environ["ROUNDTABLE_ADMIN_TOKEN"]  # the operators' API takes only the server's
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


def _event_validators() -> dict[str, Draft202012Validator]:
    """Return validators of the AsyncAPI envelopes: the snapshot, and every event of the log."""
    if not _validators:
        document = bundled_asyncapi()
        for name in ("Snapshot", "RoomEvent"):
            schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
            checker = Draft202012Validator.FORMAT_CHECKER
            _validators[name] = Draft202012Validator(schema, format_checker=checker)
    return _validators


_validators: dict[str, Draft202012Validator] = {}


def stream_events(text: str) -> list[dict[str, str]]:
    """Return the events of an event stream's text as EventSource dispatches them (no comments)."""
    events: list[dict[str, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        if data:
            events.append({**fields, "data": "\n".join(data)})
    return events


@schemathesis.check
class EventsMatchTheAsyncAPISchema:
    """Every SSE event read validates against asyncapi.yaml; and the run read at least one."""

    def __init__(self) -> None:
        self.read: set[str] = set()

    def after_response(self, ctx: Any, response: Any, case: Any) -> None:
        """Check each event of a `text/event-stream` answer: its envelope, `event` and `id`."""
        content_type = (response.headers.get("content-type") or [""])[0]
        if not content_type.startswith("text/event-stream"):
            return
        for event in stream_events(response.content.decode("utf-8")):
            envelope = json.loads(event["data"])
            kind = "Snapshot" if event.get("event") == "snapshot" else "RoomEvent"
            problems = [e.message for e in _event_validators()[kind].iter_errors(envelope)]
            if problems:
                raise AssertionError(f"SSE event is not a valid {kind} of asyncapi.yaml: {problems[:3]}")
            if event.get("event") != envelope["type"]:
                said = event.get("event")
                raise AssertionError(f"SSE `event: {said}` differs from its type {envelope['type']!r}")
            seq = envelope["data"]["last_seq"] if kind == "Snapshot" else envelope["seq"]
            if event.get("id") != str(seq):
                raise AssertionError(f"SSE `id: {event.get('id')}` differs from the envelope's seq {seq}")
            self.read.add(f"{envelope['room_id']}/{event.get('id')}")

    def after_run(self, ctx: Any) -> None:
        """Fail when no event was read: the stream would then have gone untested."""
        if not self.read:
            raise AssertionError("no SSE event was read, so none was checked against asyncapi.yaml")
