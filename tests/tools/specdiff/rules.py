"""The rule table: what each kind of contract change does to a client that already exists.

A change's direction decides: what the client sends (request bodies, parameters, WebSocket
commands) may only grow more permissive, and what the server sends (responses, events) may
only grow more precise. Each rule is classified once for each direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["client sends", "server sends"]
CLIENT: Direction = "client sends"
SERVER: Direction = "server sends"


@dataclass(frozen=True)
class Rule:
    """How the report words a change, and whether it breaks clients in each direction."""

    says: str
    breaks_client_sends: bool
    breaks_server_sends: bool

    def breaking(self, direction: Direction) -> bool:
        """Return whether this change breaks an existing client in `direction`."""
        return self.breaks_client_sends if direction == CLIENT else self.breaks_server_sends


# rule id: Rule(wording, breaking when the client sends it, breaking when the server sends it)
RULES: dict[str, Rule] = {
    # HTTP operations, event and command types, channels
    "operation-added": Rule("operation added", False, False),
    "operation-removed": Rule("operation removed", True, True),
    "message-added": Rule("added", False, False),
    "message-removed": Rule("removed", True, True),
    "channel-added": Rule("channel added", False, False),
    "channel-removed": Rule("channel removed", True, True),
    "security-alternative-added": Rule("accepts another credential", False, False),
    "security-alternative-removed": Rule("no longer accepts a credential", True, True),
    "request-body-now-required": Rule("request body now required", True, True),
    "request-body-now-optional": Rule("request body now optional", False, False),
    "media-type-added": Rule("media type added", False, False),
    "media-type-removed": Rule("media type removed", True, True),
    "success-status-added": Rule("success status added", True, True),
    "success-status-removed": Rule("success status removed", True, True),
    "error-status-added": Rule("error status added", False, False),
    "error-status-removed": Rule("error status removed", False, False),
    # Fields: properties, parameters, headers
    "field-added-optional": Rule("optional field added", False, False),
    "field-added-required": Rule("required field added", True, False),
    "field-removed": Rule("field removed", True, True),
    "field-renamed": Rule("field renamed", True, True),
    "field-now-required": Rule("field now required", True, False),
    "field-now-optional": Rule("field now optional", False, True),
    # Values a field takes
    "type-narrowed": Rule("type narrowed", True, False),
    "type-widened": Rule("type widened", False, True),
    "type-changed": Rule("type changed", True, True),
    "enum-value-removed": Rule("enum value removed", True, False),
    "enum-value-added": Rule("enum value added", False, True),
    "constraint-tightened": Rule("constraint tightened", True, False),
    "constraint-loosened": Rule("constraint loosened", False, True),
    "constraint-changed": Rule("constraint changed", True, True),
    "extra-fields-refused": Rule("unknown fields now refused", True, False),
    "extra-fields-allowed": Rule("unknown fields now allowed", False, False),
    "default-changed": Rule("default changed", False, False),
}


@dataclass(frozen=True)
class Change:
    """One difference between two versions of the contract, classified by its rule."""

    spec: Literal["openapi", "asyncapi"]
    rule: str
    direction: Direction
    subject: str  # what changed: "`Room.name`", "`GET /v1/rooms`", "event `vote.cast`"
    where: str  # where a client meets it: "`GET /v1/rooms` → 200", "event `vote.cast`"
    detail: str = ""  # "renamed to `title`", "`closed`", "maximum 20 → 10"

    @property
    def breaking(self) -> bool:
        """Return whether this change breaks an existing client."""
        return RULES[self.rule].breaking(self.direction)
