"""Schemathesis reads the event stream's `itemSchema`: each event is checked, a broken one fails."""

from __future__ import annotations

import io

import pytest
import requests
import schemathesis
from schemathesis.core.transport import Response
from urllib3 import HTTPResponse

from tests.support import ROOT

ROOM = "6f1c2a9e-8a53-4d0f-9b8e-3c2b7d1e5a40"
JOINED = (
    f'{{"seq": 3, "room_id": "{ROOM}", "type": "player.joined", "at": "2026-11-26T12:00:00Z", "data": {{}}}}'
)


def answer(body: str) -> Response:
    """Return a 200 event stream carrying `body`, as schemathesis would have read it."""
    raw = HTTPResponse(
        body=io.BytesIO(body.encode()),
        headers={"Content-Type": "text/event-stream; charset=utf-8"},
        status=200,
        preload_content=False,
    )
    response = requests.Response()
    response.status_code = 200
    response.raw = raw
    response._content = body.encode()
    response.headers.update(raw.headers)
    response.request = requests.Request("GET", f"http://roundtable.test/v1/rooms/{ROOM}/events").prepare()
    response.url = str(response.request.url)
    return Response.from_requests(response, verify=True)


def validate(body: str) -> None:
    """Validate `body` as the answer of streamRoomEvents against openapi/openapi.yaml."""
    operation = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.yaml")[
        "/v1/rooms/{room_id}/events"
    ]
    operation["GET"].validate_response(answer(body))


def test_a_stream_of_valid_events_conforms() -> None:
    validate(f": heartbeat\n\nretry: 3000\n\nid: 3\nevent: player.joined\ndata: {JOINED}\n\n")


@pytest.mark.parametrize(
    "event",
    [
        f"id: x3\nevent: player.joined\ndata: {JOINED}\n\n",
        f"event: player.joined\ndata: {JOINED}\n\n",
        'id: 3\nevent: player.joined\ndata: {"room_id": "not a uuid"}\n\n',
        "id: 3\nevent: player.joined\ndata: not json\n\n",
    ],
    ids=["id not a seq", "no id", "envelope breaks its schema", "data not JSON"],
)
def test_an_event_that_breaks_the_item_schema_fails(event: str) -> None:
    with pytest.raises(Exception, match=r"SSE event (payload )?violates"):
        validate(event)
