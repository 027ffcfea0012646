"""The SSE check of the schemathesis run: events that break asyncapi.yaml fail it, valid ones pass."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from tests.contract.schemathesis_hooks import EventsMatchTheAsyncAPISchema

ROOM = "6f1c2a9e-8a53-4d0f-9b8e-3c2b7d1e5a40"
PLAYER = {
    "id": "0b7e4a52-1f2d-4c3a-8e9b-5d6f7a8b9c0d",
    "nickname": "Carol",
    "seat": 3,
    "is_host": False,
    "alive": True,
    "connected": False,
    "team": None,
    "role": None,
}
JOINED = {
    "seq": 3,
    "room_id": ROOM,
    "type": "player.joined",
    "at": "2026-11-26T12:00:00Z",
    "data": {"player": PLAYER},
}


def stream(*events: tuple[str, str, dict[str, Any]]) -> Any:
    """Return a response-like object carrying these (id, event, envelope) as an event stream."""
    text = "retry: 3000\n\n: heartbeat\n\n" + "".join(
        f"id: {id_}\nevent: {event}\ndata: {json.dumps(envelope)}\n\n" for id_, event, envelope in events
    )
    headers = {"content-type": ["text/event-stream; charset=utf-8"]}
    return SimpleNamespace(headers=headers, content=text.encode())


def test_a_valid_event_passes_and_counts_as_read() -> None:
    check = EventsMatchTheAsyncAPISchema()
    check.after_response(None, stream(("3", "player.joined", JOINED)), None)
    check.after_run(None)


@pytest.mark.parametrize(
    ("events", "says"),
    [
        ((("3", "player.joined", {**JOINED, "data": {}}),), "not a valid RoomEvent"),
        ((("3", "player.left", JOINED),), "differs from its type"),
        ((("4", "player.joined", JOINED),), "differs from the envelope's seq"),
        ((("1", "snapshot", {"type": "snapshot", "room_id": ROOM, "data": {}}),), "not a valid Snapshot"),
    ],
    ids=["envelope breaks its schema", "event name is not the type", "id is not the seq", "bad snapshot"],
)
def test_an_event_that_breaks_the_contract_fails(
    events: tuple[tuple[str, str, dict[str, Any]]], says: str
) -> None:
    with pytest.raises(AssertionError, match=says):
        EventsMatchTheAsyncAPISchema().after_response(None, stream(*events), None)


def test_a_run_that_read_no_event_fails() -> None:
    check = EventsMatchTheAsyncAPISchema()
    check.after_response(None, stream(), None)
    with pytest.raises(AssertionError, match="no SSE event was read"):
        check.after_run(None)
