"""Validate both hand-written contracts: OpenAPI 3.2 and AsyncAPI 3.0."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import validate
from pydantic import ValidationError

with warnings.catch_warnings():
    # asyncapi3's models shadow BaseModel.schema; harmless, and not ours to fix.
    warnings.simplefilter("ignore", UserWarning)
    from asyncapi3 import AsyncAPI3

ROOT = Path(__file__).resolve().parents[2]


def load(path: Path) -> dict[str, Any]:
    """Return the YAML document at `path`."""
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def resolve(base: Path, ref: str) -> Any:
    """Return what a `$ref` in the file at `base` points to."""
    target, _, pointer = ref.partition("#")
    node: Any = load((base.parent / target).resolve()) if target else load(base)
    for part in filter(None, pointer.split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def unresolved_refs(path: Path) -> list[str]:
    """Return every `$ref` in `path` that points nowhere."""
    broken: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolve(path, ref)
                except (KeyError, TypeError, FileNotFoundError):
                    broken.append(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load(path))
    return broken


def main() -> int:
    """Return 0 when both specs are valid."""
    failures: list[str] = []
    openapi = ROOT / "openapi" / "openapi.yaml"
    try:
        validate(load(openapi))
    except Exception as exc:  # the validator raises several error types
        failures.append(f"{openapi.relative_to(ROOT)}: {exc}")
    asyncapi = ROOT / "asyncapi" / "asyncapi.yaml"
    try:
        AsyncAPI3.model_validate(load(asyncapi))
    except ValidationError as exc:
        failures.append(f"{asyncapi.relative_to(ROOT)}: {exc}")
    for path in (openapi, asyncapi):
        failures += [f"{path.relative_to(ROOT)}: unresolved $ref {ref}" for ref in unresolved_refs(path)]
    for failure in failures:
        print(failure, file=sys.stderr)
    if not failures:
        print("openapi/openapi.yaml (OpenAPI 3.2) and asyncapi/asyncapi.yaml (AsyncAPI 3.0) are valid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
