"""The AsyncAPI document in one piece: its `$ref`s into the OpenAPI file brought inside.

Documentation renderers (and clients) read one self-contained document more reliably than
a file pointing at another.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import yaml

from backend.core.config import PROJECT_ROOT

OPENAPI_REF = "../openapi/openapi.yaml#/components/schemas/"
LOCAL_REF = "#/components/schemas/"


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / name).read_text(encoding="utf-8"))
    return document


def bundle(asyncapi: dict[str, Any], openapi: dict[str, Any]) -> dict[str, Any]:
    """Return `asyncapi` with every schema it takes from `openapi` copied into its components."""
    document = copy.deepcopy(asyncapi)
    theirs: dict[str, Any] = openapi["components"]["schemas"]
    ours: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    wanted: list[str] = []

    def rewrite(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(OPENAPI_REF):
                name = ref.removeprefix(OPENAPI_REF)
                node["$ref"] = LOCAL_REF + name
                wanted.append(name)
            for value in node.values():
                rewrite(value)
        elif isinstance(node, list):
            for value in node:
                rewrite(value)

    def refs_in(node: Any) -> list[str]:
        if isinstance(node, dict):
            ref = node.get("$ref")
            found = (
                [ref.removeprefix(LOCAL_REF)] if isinstance(ref, str) and ref.startswith(LOCAL_REF) else []
            )
            return found + [r for v in node.values() for r in refs_in(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs_in(v)]
        return []

    own = set(ours)
    rewrite(document)
    while wanted:
        name = wanted.pop()
        if name in own:
            raise ValueError(f"schema {name} is defined in both specs; rename one")
        if name not in ours:
            ours[name] = copy.deepcopy(theirs[name])
            wanted.extend(refs_in(ours[name]))
    return document


def load_openapi() -> dict[str, Any]:
    """Return the OpenAPI document."""
    return _load("openapi/openapi.yaml")


@lru_cache
def bundled_asyncapi() -> dict[str, Any]:
    """Return the project's AsyncAPI document, self-contained."""
    return bundle(_load("asyncapi/asyncapi.yaml"), _load("openapi/openapi.yaml"))
