"""Compare two resolved JSON Schemas field by field, in the direction the data travels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tests.tools.specdiff.rules import Change, Direction
from tests.tools.specdiff.specs import NAME

Schema = dict[str, Any]
# Words for people and tools; no client depends on them.
DOCS = {"description", "title", "summary", "examples", "example", "$comment", "externalDocs", NAME}
LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
EXACT = ("pattern", "format", "multipleOf")


@dataclass(frozen=True)
class Use:
    """Where a schema is used: which spec, which way the data goes, and how to name the place."""

    spec: Literal["openapi", "asyncapi"]
    direction: Direction
    where: str
    root: str  # how to name the schema itself when it has no name: "request body", "payload"

    def change(self, rule: str, at: str, detail: str = "") -> Change:
        """Return the change `rule` at the field path `at` of this use."""
        return Change(self.spec, rule, self.direction, f"`{at}`" if at else self.root, self.where, detail)


def show(value: Any) -> str:
    """Return `value` as the report quotes it."""
    return f"`{'null' if value is None else value}`"


def bare(node: Any) -> Any:
    """Return `node` without its documentation, to tell whether two schemas accept the same."""
    if isinstance(node, dict):
        return {k: bare(v) for k, v in node.items() if k not in DOCS}
    if isinstance(node, list):
        return [bare(v) for v in node]
    return node


def normal(schema: Any) -> Schema:
    """Return `schema` with `allOf` merged, `const` as an enum, unions of `null` or primitives as types."""
    if not isinstance(schema, dict):
        return {"types": frozenset()}  # `true` or no schema: anything
    if "types" in schema:
        return schema  # normal already (an alternative made by `_as_union`)
    node: Schema = {k: v for k, v in schema.items() if k not in ("allOf", "anyOf", "oneOf", "type", "const")}
    if "const" in schema:
        node["enum"] = [schema["const"]]
    declared = schema.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    if schema.get("nullable") is True:
        types.add("null")
    # Parts and alternatives merge under the node's own keywords; `types` is set last.
    for part in map(normal, schema.get("allOf", [])):
        types |= part["types"]
        if "properties" in part:
            node["properties"] = {**part["properties"], **node.get("properties", {})}
        if "required" in part:
            node["required"] = [*part["required"], *node.get("required", [])]
        node = {**part, **node}
    branches: list[Any] = schema.get("anyOf") or schema.get("oneOf") or []
    others = [(raw, b) for raw in branches if (b := normal(raw))["types"] != {"null"}]
    types |= {"null"} if len(others) < len(branches) else set()
    if len(others) == 1:
        types |= others[0][1]["types"]
        node = {**others[0][1], **node}
    elif others and all(set(b) <= {"types", "format"} for _, b in others):
        types = types.union(*(b["types"] for _, b in others))
    elif others:
        node["branches"] = [raw for raw, _ in others]  # compared one by one, each normalised then
    node["types"] = frozenset(types)
    return node


def compare(old_schema: Any, new_schema: Any, use: Use, at: str = "") -> Iterator[Change]:
    """Yield every change between two resolved schemas used at `use`, the field path being `at`."""
    old, new = normal(old_schema), normal(new_schema)
    if ("branches" in old) != ("branches" in new):
        old, new = _as_union(old), _as_union(new)
    yield from _types(old["types"], new["types"], use, at)
    if old.get("default") != new.get("default"):
        yield use.change("default-changed", at, f"{show(old.get('default'))} → {show(new.get('default'))}")
    # From here on a named schema speaks for itself: `JoinCode` changed, wherever it is used.
    at = new.get(NAME) or old.get(NAME) or at
    yield from _enums(old.get("enum"), new.get("enum"), use, at)
    yield from _constraints(old, new, use, at)
    yield from _properties(old, new, use, at)
    if "items" in old or "items" in new:
        yield from compare(old.get("items"), new.get("items"), use, f"{at}[]")
    yield from _branches(old.get("branches", []), new.get("branches", []), use, at)


def _covers(wide: frozenset[str], narrow: frozenset[str]) -> bool:
    """Return whether every value of the types `narrow` is also one of the types `wide`."""
    if not wide:
        return True
    return bool(narrow) and all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def _types(old: frozenset[str], new: frozenset[str], use: Use, at: str) -> Iterator[Change]:
    if old == new:
        return
    detail = f"{' or '.join(sorted(old)) or 'any'} → {' or '.join(sorted(new)) or 'any'}"
    if _covers(new, old):
        yield use.change("type-widened", at, detail)
    elif _covers(old, new):
        yield use.change("type-narrowed", at, detail)
    else:
        yield use.change("type-changed", at, detail)


def _enums(old: list[Any] | None, new: list[Any] | None, use: Use, at: str) -> Iterator[Change]:
    if old == new:
        return
    if old is None:
        yield use.change("constraint-tightened", at, f"now one of {', '.join(map(show, new or []))}")
    elif new is None:
        yield use.change("constraint-loosened", at, f"no longer one of {', '.join(map(show, old))}")
    else:
        yield from (use.change("enum-value-removed", at, show(v)) for v in old if v not in new)
        yield from (use.change("enum-value-added", at, show(v)) for v in new if v not in old)


def _constraints(old: Schema, new: Schema, use: Use, at: str) -> Iterator[Change]:
    for key in (*LOWER, *UPPER, *EXACT):
        was, now = old.get(key), new.get(key)
        if was == now:
            continue
        detail = f"{key} {'none' if was is None else show(was)} → {'none' if now is None else show(now)}"
        if was is not None and now is not None and key in EXACT:
            rule = "constraint-changed"
        elif now is None:
            rule = "constraint-loosened"
        elif was is None:
            rule = "constraint-tightened"
        else:
            rule = "constraint-tightened" if (now > was) == (key in LOWER) else "constraint-loosened"
        yield use.change(rule, at, detail)


def _properties(old: Schema, new: Schema, use: Use, at: str) -> Iterator[Change]:
    was, now = old.get("properties", {}), new.get("properties", {})
    was_required, now_required = set(old.get("required", [])), set(new.get("required", []))
    removed = [name for name in was if name not in now]
    added = [name for name in now if name not in was]
    # A field that disappears while exactly one field with the same schema appears was renamed.
    renamed: dict[str, str] = {}
    for name in removed:
        twins = [a for a in added if bare(was[name]) == bare(now[a]) and a not in renamed.values()]
        if len(twins) == 1:
            renamed[name] = twins[0]
    for name in removed:
        field = f"{at}.{name}" if at else name
        if name in renamed:
            yield use.change("field-renamed", field, f"now `{renamed[name]}`")
        else:
            yield use.change("field-removed", field)
    for name in added:
        if name not in renamed.values():
            rule = "field-added-required" if name in now_required else "field-added-optional"
            yield use.change(rule, f"{at}.{name}" if at else name)
    for name in (n for n in now if n in was):
        field = f"{at}.{name}" if at else name
        if name in was_required and name not in now_required:
            yield use.change("field-now-optional", field)
        elif name in now_required and name not in was_required:
            yield use.change("field-now-required", field)
        yield from compare(was[name], now[name], use, field)
    was_extra, now_extra = old.get("additionalProperties", True), new.get("additionalProperties", True)
    if was_extra is not False and now_extra is False:
        yield use.change("extra-fields-refused", at)
    elif was_extra is False and now_extra is not False:
        yield use.change("extra-fields-allowed", at)
    if isinstance(was_extra, dict) and isinstance(now_extra, dict):
        yield from compare(was_extra, now_extra, use, f"{at}.*")


def _as_union(node: Schema) -> Schema:
    """Return `node` as a union, itself its one alternative unless it is a union already."""
    if "branches" in node:
        return node
    return {"types": node["types"] & {"null"}, "branches": [{**node, "types": node["types"] - {"null"}}]}


def _branch_key(branch: Schema, index: int) -> str:
    """Return what identifies a union's alternative: its schema's name, its `type` constant, or its place."""
    tag = branch.get("properties", {}).get("type", {})
    return str(branch.get(NAME) or (isinstance(tag, dict) and tag.get("const")) or f"#{index + 1}")


def _branches(old: list[Schema], new: list[Schema], use: Use, at: str) -> Iterator[Change]:
    was = {_branch_key(b, i): b for i, b in enumerate(old)}
    now = {_branch_key(b, i): b for i, b in enumerate(new)}
    yield from (use.change("type-narrowed", at, f"alternative `{k}` removed") for k in was if k not in now)
    yield from (use.change("type-widened", at, f"alternative `{k}` added") for k in now if k not in was)
    for key in (k for k in now if k in was):
        yield from compare(was[key], now[key], use, at)
