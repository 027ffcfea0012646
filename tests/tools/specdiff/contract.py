"""Every change between two versions of the contract: HTTP operations, events and commands."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.tools.specdiff.rules import CLIENT, SERVER, Change, Direction
from tests.tools.specdiff.schemas import Use, compare
from tests.tools.specdiff.specs import ASYNCAPI, OPENAPI, Specs

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def diff(old: Specs, new: Specs) -> list[Change]:
    """Return every change from `old` to `new`, both specs."""
    return [*_http(old, new), *_events(old, new)]


# OpenAPI


def _operations(specs: Specs) -> dict[str, tuple[str, dict[str, Any]]]:
    """Return each operation, resolved, by method and path template (path parameter names aside)."""
    document = specs.document(OPENAPI)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for path, item in specs.resolve(OPENAPI, document.get("paths") or {}).items():
        for method in (m for m in METHODS if m in item):
            operation = item[method]
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            label = f"{method.upper()} {path}"
            found[f"{method.upper()} {re.sub(r'{[^}]*}', '{}', path)}"] = (
                label,
                {
                    **operation,
                    # An operation's own parameter replaces its path's one of the same name and place.
                    "parameters": {_parameter_key(p): p for p in parameters},
                    "security": operation.get("security", document.get("security", [])),
                },
            )
    return found


def _parameter_key(parameter: dict[str, Any]) -> str:
    name = str(parameter["name"])
    return f"{parameter['in']} parameter `{name.lower() if parameter['in'] == 'header' else name}`"


def _http(old: Specs, new: Specs) -> Iterator[Change]:
    was, now = _operations(old), _operations(new)
    for key in (k for k in was if k not in now):
        label = f"`{was[key][0]}`"
        yield Change("openapi", "operation-removed", CLIENT, label, label)
    for key in (k for k in now if k not in was):
        label = f"`{now[key][0]}`"
        yield Change("openapi", "operation-added", CLIENT, label, label)
    for key in (k for k in now if k in was):
        yield from _operation(now[key][0], was[key][1], now[key][1])


def _operation(label: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    where = f"`{label}`"
    yield from _security(where, old["security"], new["security"])
    yield from _fields(old["parameters"], new["parameters"], CLIENT, where)
    was_body, now_body = old.get("requestBody") or {}, new.get("requestBody") or {}
    if now_body.get("required") and not was_body.get("required"):
        yield Change("openapi", "request-body-now-required", CLIENT, "request body", where)
    elif was_body.get("required") and now_body and not now_body.get("required"):
        yield Change("openapi", "request-body-now-optional", CLIENT, "request body", where)
    body = Use("openapi", CLIENT, f"{where} request body", "request body")
    yield from _contents(was_body.get("content", {}), now_body.get("content", {}), body)
    was, now = old.get("responses", {}), new.get("responses", {})
    for status in (s for s in was if s not in now):
        kind = "success" if str(status)[0] in "123" else "error"
        yield Change("openapi", f"{kind}-status-removed", SERVER, f"`{status}`", where)
    for status in (s for s in now if s not in was):
        kind = "success" if str(status)[0] in "123" else "error"
        yield Change("openapi", f"{kind}-status-added", SERVER, f"`{status}`", where)
    for status in (s for s in now if s in was):
        answer = f"{where} → {status}"
        headers = {f"header `{k.lower()}`": v for k, v in (was[status].get("headers") or {}).items()}
        new_headers = {f"header `{k.lower()}`": v for k, v in (now[status].get("headers") or {}).items()}
        yield from _fields(headers, new_headers, SERVER, answer)
        use = Use("openapi", SERVER, answer, "response body")
        yield from _contents(was[status].get("content", {}), now[status].get("content", {}), use)


def _security(where: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> Iterator[Change]:
    """Yield the credentials an operation stopped or started accepting (no security: anonymous)."""

    def alternatives(security: list[dict[str, Any]]) -> set[str]:
        return {" + ".join(f"`{s}`" for s in sorted(req)) or "anonymous" for req in security} or {"anonymous"}

    was, now = alternatives(old), alternatives(new)
    for alternative in sorted(was - now):
        yield Change("openapi", "security-alternative-removed", CLIENT, "security", where, alternative)
    for alternative in sorted(now - was):
        yield Change("openapi", "security-alternative-added", CLIENT, "security", where, alternative)


def _fields(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], direction: Direction, where: str
) -> Iterator[Change]:
    """Yield the changes to named fields outside a body: parameters, response headers."""
    for name in (n for n in old if n not in new):
        yield Change("openapi", "field-removed", direction, name, where)
    for name in (n for n in new if n not in old):
        rule = "field-added-required" if new[name].get("required") else "field-added-optional"
        yield Change("openapi", rule, direction, name, where)
    for name in (n for n in new if n in old):
        if old[name].get("required") and not new[name].get("required"):
            yield Change("openapi", "field-now-optional", direction, name, where)
        elif new[name].get("required") and not old[name].get("required"):
            yield Change("openapi", "field-now-required", direction, name, where)
        use = Use("openapi", direction, where, name)
        yield from compare(old[name].get("schema"), new[name].get("schema"), use)


def _contents(old: dict[str, Any], new: dict[str, Any], use: Use) -> Iterator[Change]:
    """Yield the changes to a body: its media types, and the schema of each one kept."""
    for media in (m for m in old if m not in new):
        yield Change(use.spec, "media-type-removed", use.direction, f"`{media}`", use.where)
    for media in (m for m in new if m not in old):
        yield Change(use.spec, "media-type-added", use.direction, f"`{media}`", use.where)
    for media in (m for m in new if m in old):
        was, now = old[media], new[media]
        if "itemSchema" in was or "itemSchema" in now:
            # A stream's events (OpenAPI 3.2 `itemSchema`); without it, any event. Its `schema`
            # then says something else (the raw text before, the events as an array after),
            # so it is compared only when both sides describe the events.
            yield from compare(was.get("itemSchema", {}), now.get("itemSchema", {}), use)
            if "itemSchema" in was and "itemSchema" in now:
                yield from compare(was.get("schema"), now.get("schema"), use)
        else:
            yield from compare(was.get("schema"), now.get("schema"), use)


# AsyncAPI: the document speaks for the client, so `receive` is what the server sends.


@dataclass
class _Message:
    payload: Any
    channels: list[str] = field(default_factory=list)


def _channels(specs: Specs) -> dict[str, dict[str, Any]]:
    """Return each channel, resolved, by address."""
    channels = specs.resolve(ASYNCAPI, specs.document(ASYNCAPI).get("channels") or {})
    return {str(c.get("address") or key): c for key, c in channels.items()}


def _messages(specs: Specs) -> dict[tuple[Direction, str], _Message]:
    """Return each message by its direction and name, with the channels it travels on."""
    found: dict[tuple[Direction, str], _Message] = {}
    operations = specs.resolve(ASYNCAPI, specs.document(ASYNCAPI).get("operations") or {})
    for operation in operations.values():
        channel = operation.get("channel", {})
        direction = SERVER if operation.get("action") == "receive" else CLIENT
        for message in operation.get("messages") or list(channel.get("messages", {}).values()):
            entry = found.setdefault((direction, str(message.get("name"))), _Message(message.get("payload")))
            entry.channels.append(str(channel.get("address")))
    return found


def _events(old: Specs, new: Specs) -> Iterator[Change]:
    was_channels, now_channels = _channels(old), _channels(new)
    for address in (a for a in was_channels if a not in now_channels):
        yield Change("asyncapi", "channel-removed", SERVER, f"`{address}`", f"`{address}`")
    for address in (a for a in now_channels if a not in was_channels):
        yield Change("asyncapi", "channel-added", SERVER, f"`{address}`", f"`{address}`")
    for address in (a for a in now_channels if a in was_channels):
        # A WebSocket's query parameters are what the client sends.
        was_query, now_query = (
            c.get("bindings", {}).get("ws", {}).get("query")
            for c in (was_channels[address], now_channels[address])
        )
        yield from compare(was_query, now_query, Use("asyncapi", CLIENT, f"`{address}`", "query"))
    was, now = _messages(old), _messages(new)
    for key in sorted(was.keys() | now.keys()):
        direction, name = key
        subject = f"{'event' if direction == SERVER else 'command'} `{name}`"
        old_channels = was[key].channels if key in was else []
        new_channels = now[key].channels if key in now else []
        for address in (a for a in old_channels if a not in new_channels):
            yield Change("asyncapi", "message-removed", direction, subject, f"`{address}`")
        for address in (a for a in new_channels if a not in old_channels):
            yield Change("asyncapi", "message-added", direction, subject, f"`{address}`")
        if key in was and key in now:
            use = Use("asyncapi", direction, subject, "payload")
            yield from compare(was[key].payload, now[key].payload, use)
