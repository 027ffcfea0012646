"""Both specs as of one version (a git revision, a directory or documents), `$ref`s resolved."""

from __future__ import annotations

import posixpath
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

OPENAPI = "openapi/openapi.yaml"
ASYNCAPI = "asyncapi/asyncapi.yaml"
# A resolved `#/components/schemas/X` keeps its name here, so the report can say `X.field`.
NAME = "x-specdiff-name"


class Specs:
    """The contract at one version: documents by repository path, read on demand."""

    def __init__(self, read: Callable[[str], Any]) -> None:
        self._read = cache(read)

    @classmethod
    def at_revision(cls, root: Path, revision: str) -> Specs:
        """Return the specs committed at `revision` in the git repository at `root`."""

        def read(path: str) -> Any:
            shown = subprocess.run(
                ["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True, text=True, check=False
            )
            return yaml.safe_load(shown.stdout) if shown.returncode == 0 else None

        return cls(read)

    @classmethod
    def in_directory(cls, root: Path) -> Specs:
        """Return the specs as they are in the directory `root` (the working tree)."""

        def read(path: str) -> Any:
            file = root / path
            return yaml.safe_load(file.read_text(encoding="utf-8")) if file.is_file() else None

        return cls(read)

    @classmethod
    def of(cls, documents: dict[str, Any]) -> Specs:
        """Return specs made of `documents`, keyed by path (tests)."""
        return cls(documents.get)

    def document(self, path: str) -> dict[str, Any]:
        """Return the document at `path`, empty when there is none."""
        document = self._read(path)
        return document if isinstance(document, dict) else {}

    def version(self, path: str) -> str | None:
        """Return the document's `info.version`."""
        version = self.document(path).get("info", {}).get("version")
        return str(version) if version is not None else None

    def resolve(self, path: str, node: Any, seen: tuple[str, ...] = ()) -> Any:
        """Return `node` of the document at `path` with every `$ref` in it replaced by its target.

        A recursive schema stops at its second visit and stays a `$ref` there.
        """
        if isinstance(node, list):
            return [self.resolve(path, item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return {key: self.resolve(path, value, seen) for key, value in node.items()}
        file, _, pointer = ref.partition("#")
        target_path = posixpath.normpath(posixpath.join(posixpath.dirname(path), file)) if file else path
        named = pointer.startswith("/components/schemas/") and pointer.count("/") == 3
        name = pointer.rsplit("/", 1)[-1] if named else None
        key = f"{target_path}#{pointer}"
        if key in seen:
            return {"$ref": key, NAME: name}
        target: Any = self.document(target_path)
        for part in filter(None, pointer.split("/")):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        resolved = self.resolve(target_path, target, (*seen, key))
        if isinstance(resolved, dict):
            # OpenAPI 3.1 lets a `$ref` carry siblings (a description, a default): they win.
            siblings = {k: self.resolve(path, v, seen) for k, v in node.items() if k != "$ref"}
            resolved = {**resolved, **({NAME: name} if name else {}), **siblings}
        return resolved
