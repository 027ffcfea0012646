"""Write the Nickname pattern of openapi/openapi.yaml from the server's nickname rule.

The rule (backend/domain/nicknames.py) reads Unicode's own data: which characters are
controls, format, unassigned or invisible, and what NFKC makes of each. A pattern stating it is
a list of some 400 ranges and 1,300 emoji nobody should type, so this writes it, and
tests/unit/test_nicknames.py fails when the spec's pattern and the rule part.

    python -m tests.tools.nickname_pattern          # exit 1 when the spec's pattern is stale
    python -m tests.tools.nickname_pattern --write  # rewrite it
"""

from __future__ import annotations

import sys
from pathlib import Path

from backend.domain.nicknames import nickname_pattern

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.yaml"
INDENT = "      "


def yaml_scalar(text: str) -> str:
    """Return `text` as a YAML double-quoted scalar (the pattern holds no control character)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rewritten(spec: str) -> str:
    """Return the spec with the Nickname schema's `pattern:` line made from the rule."""
    lines = spec.split("\n")
    start = lines.index("    Nickname:")
    for i in range(start + 1, len(lines)):
        if not lines[i].startswith(INDENT):
            break
        if lines[i].startswith(INDENT + "pattern: "):
            lines[i] = f"{INDENT}pattern: {yaml_scalar(nickname_pattern())}"
            return "\n".join(lines)
    raise SystemExit("openapi.yaml: the Nickname schema has no pattern line to rewrite")


def main(argv: list[str]) -> int:
    spec = SPEC.read_text(encoding="utf-8")
    fresh = rewritten(spec)
    if "--write" in argv:
        SPEC.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != spec:
        print("openapi.yaml: the Nickname pattern differs from the rule; run `make nickname-pattern`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
