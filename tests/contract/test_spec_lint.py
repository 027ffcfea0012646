"""`make spec-lint` fails on each kind of lint error introduced in a scratch copy of the specs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import ROOT

LINT = Path("tests/tools/lint")
COPIED = (
    Path("openapi/openapi.yaml"),
    Path("asyncapi/asyncapi.yaml"),
    LINT / "redocly.yaml",
    LINT / "roundtable-plugin.mjs",
)
# A path of the OpenAPI file that answers no 4XX, and a 5XX that is not a problem.
UNREFUSING_PATH = """\
  /v1/rulesets:
    get:
      operationId: listRulesets
      tags: [rooms]
      summary: List the rulesets
      description: The rulesets a room may be created with.
      security: []
      responses:
        '200':
          description: The rulesets.
          content:
            application/json:
              schema:
                type: array
                items:
                  $ref: '#/components/schemas/Ruleset'
        '500':
          description: Something went wrong.
          content:
            application/json:
              schema:
                type: string
"""
JSON_404_PATH = UNREFUSING_PATH.replace(
    "'500':\n          description: Something went wrong.", "'404':\n          description: No such ruleset."
)


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    """Return a change to the scratch copy: replace `old`, which occurs exactly once, by `new`."""

    def apply(scratch: Path) -> None:
        file = scratch / path
        text = file.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{path} should contain exactly one {old!r}"
        file.write_text(text.replace(old, new), encoding="utf-8")

    return apply


# (what is wrong, the change, the rule that must name it, what its message must say)
BROKEN = [
    (
        "an operation without operationId",
        edit("openapi/openapi.yaml", "      operationId: listRounds\n", ""),
        "operation-operationId",
        "Operation object should contain `operationId` field",
    ),
    (
        "two operations with one operationId",
        edit("openapi/openapi.yaml", "      operationId: listRounds\n", "      operationId: castVote\n"),
        "operation-operationId-unique",
        "Every operation must have a unique `operationId`",
    ),
    (
        "an operation without description",
        edit(
            "openapi/openapi.yaml",
            "      description: Host only, while the room is in the `lobby`."
            " Settings not named keep their value.\n",
            "",
        ),
        "operation-description",
        "Operation object should contain `description` field",
    ),
    (
        "a response example that breaks its schema",
        edit("openapi/openapi.yaml", "                seq: 31\n", "                seq: 0\n"),
        "no-invalid-media-type-examples",
        "must be >= 1",
    ),
    (
        "a request example with an unknown field",
        edit(
            "openapi/openapi.yaml",
            "                  text: Hello everyone!\n",
            "                  txt: Hello everyone!\n",
        ),
        "no-invalid-media-type-examples",
        "must NOT have additional properties",
    ),
    (
        "a schema example that breaks its schema",
        edit("openapi/openapi.yaml", "      examples: [K7QXMB]\n", "      examples: [K7QXM1]\n"),
        "no-invalid-schema-examples",
        'must match pattern "^[A-HJ-NP-Z2-9]{6}$"',
    ),
    (
        "an operation without any 4XX problem response",
        edit(
            "openapi/openapi.yaml",
            "components:\n  securitySchemes:\n",
            UNREFUSING_PATH + "components:\n  securitySchemes:\n",
        ),
        "roundtable/operation-problem-responses",
        "Operation `listRulesets` declares no 4XX problem response.",
    ),
    (
        "a 5XX response that is not a problem",
        edit(
            "openapi/openapi.yaml",
            "components:\n  securitySchemes:\n",
            UNREFUSING_PATH + "components:\n  securitySchemes:\n",
        ),
        "roundtable/operation-problem-responses",
        "Response 500 of `listRulesets` must be `application/problem+json`.",
    ),
    (
        "a 4XX response that is not a problem",
        edit(
            "openapi/openapi.yaml",
            "components:\n  securitySchemes:\n",
            JSON_404_PATH + "components:\n  securitySchemes:\n",
        ),
        "operation-4xx-problem-details-rfc7807",
        "Response `4xx` must have content-type `application/problem+json`.",
    ),
    (
        "an unused OpenAPI component",
        edit(
            "openapi/openapi.yaml",
            "  schemas:\n    Health:\n",
            "  schemas:\n    Unused:\n      type: string\n    Health:\n",
        ),
        "no-unused-components",
        'Component: "Unused" is never used.',
    ),
    (
        "an AsyncAPI message without payload",
        edit(
            "asyncapi/asyncapi.yaml", "      payload:\n        $ref: '#/components/schemas/PingCommand'\n", ""
        ),
        "rule/message-payload",
        "Every message declares its `payload` schema.",
    ),
    (
        "an AsyncAPI message with an inline payload",
        edit(
            "asyncapi/asyncapi.yaml",
            "      payload:\n        $ref: '#/components/schemas/PingCommand'\n",
            "      payload:\n        type: object\n",
        ),
        "rule/message-payload-schema",
        "A message's `payload` is a named schema of `components/schemas`.",
    ),
    (
        "an AsyncAPI message without summary or description",
        edit(
            "asyncapi/asyncapi.yaml",
            "      summary: Answered by an `ack` with the same `request_id`; appends nothing.\n",
            "",
        ),
        "rule/message-described",
        "Every message has a `summary` or a `description`.",
    ),
    (
        "an unused AsyncAPI component",
        edit(
            "asyncapi/asyncapi.yaml",
            "  schemas:\n    LeaveReason:\n",
            "  schemas:\n    Orphan:\n      type: string\n    LeaveReason:\n",
        ),
        "roundtable/no-unused-components",
        'Component "Orphan" is never used.',
    ),
]


def scratch_copy(tmp_path: Path) -> Path:
    """Copy both specs and the lint configuration into `tmp_path`, keeping their layout."""
    for path in COPIED:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, tmp_path / path)
    return tmp_path


def lint(scratch: Path) -> subprocess.CompletedProcess[str]:
    """Run the pinned linter as `make spec-lint` does, on the scratch copy."""
    return subprocess.run(
        [str(ROOT / LINT / "node_modules/.bin/redocly"), "lint", "--config", str(LINT / "redocly.yaml")],
        cwd=scratch,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_NOTIFICATIONS": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module", autouse=True)
def linter_installed() -> None:
    """Install the pinned linter (npm ci), when needed."""
    installed = subprocess.run(
        ["make", "-s", "lint-install"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr


def test_make_check_runs_the_spec_lint() -> None:
    """`make check` depends on `spec-lint`, so any lint error fails it."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    check = re.search(r"^check:([^#\n]*)", makefile, re.MULTILINE)
    assert check is not None
    assert "spec-lint" in check.group(1).split()


def test_the_unmodified_specs_pass_without_a_warning(tmp_path: Path) -> None:
    done = lint(scratch_copy(tmp_path))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Your API descriptions are valid" in output, output
    assert not re.search(r"\bwarn(ing)?s?\b", output.replace("Deprecation warning", ""), re.IGNORECASE), (
        output
    )


@pytest.mark.parametrize(
    ("change", "rule", "message"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN]
)
def test_a_lint_error_in_a_scratch_copy_fails(
    tmp_path: Path, change: Callable[[Path], None], rule: str, message: str
) -> None:
    scratch = scratch_copy(tmp_path)
    change(scratch)
    done = lint(scratch)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"generated by the {rule} rule" in output, output
    assert message in output, output


def spectral(scratch: Path) -> subprocess.CompletedProcess[str]:
    """Run Spectral as `make spectral-lint` does, with the committed ruleset, on the scratch copy."""
    return subprocess.run(
        [
            str(ROOT / LINT / "node_modules/.bin/spectral"),
            "lint",
            "--ruleset",
            str(ROOT / LINT / ".spectral.yaml"),
            "--fail-severity",
            "hint",
            "openapi/openapi.yaml",
            "asyncapi/asyncapi.yaml",
        ],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_spec_lint_runs_spectral() -> None:
    """`make spec-lint` (which `make check` runs) ends with the Spectral lint."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nspec-lint:")[1].split("\n\n")[0]
    assert "spectral-lint" in recipe
    assert "--fail-severity hint" in makefile.split("\nspectral-lint:")[1].split("\n\n")[0]


def test_spectral_finds_nothing_in_the_unmodified_specs(tmp_path: Path) -> None:
    done = spectral(scratch_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No results with a severity of 'hint' or higher found!" in done.stdout, done.stdout


def test_every_switched_off_spectral_rule_says_why() -> None:
    lines = (ROOT / LINT / ".spectral.yaml").read_text(encoding="utf-8").splitlines()
    off = [i for i, line in enumerate(lines) if line.strip().endswith(": off")]
    assert off
    for i in off:
        # The reason is the comment right above the rule, or above the rule it is grouped with.
        above = next(line for line in reversed(lines[:i]) if not line.strip().endswith(": off"))
        assert above.strip().startswith("# "), lines[i]


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (
            edit(
                "asyncapi/asyncapi.yaml",
                "  tags:\n    - name: realtime\n"
                "      description: A room's events over Server-Sent Events and the WebSocket.\n",
                "",
            ),
            "asyncapi-3-tags",
        ),
        (edit("openapi/openapi.yaml", "    x-internal: false\n", ""), "owasp:api9:2023-inventory-access"),
        (
            edit(
                "openapi/openapi.yaml",
                "  - name: rooms\n    description: Create, find and configure rooms.\n",
                "",
            ),
            "operation-tag-defined",
        ),
    ],
    ids=["an AsyncAPI document without tags", "a server without audience", "an undeclared tag"],
)
def test_a_spectral_finding_in_a_scratch_copy_fails(
    tmp_path: Path, change: Callable[[Path], None], rule: str
) -> None:
    scratch = scratch_copy(tmp_path)
    change(scratch)
    done = spectral(scratch)
    assert done.returncode != 0, done.stdout + done.stderr
    assert rule in done.stdout, done.stdout
