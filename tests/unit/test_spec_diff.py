"""The contract diff: each rule on its fixture pair, the report, and the version gate on a git repo."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools.specdiff.__main__ import default_base
from tests.tools.specdiff.contract import diff
from tests.tools.specdiff.report import release_notes, report
from tests.tools.specdiff.rules import RULES
from tests.tools.specdiff.specs import ASYNCAPI, OPENAPI, Specs

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "spec_diff_fixtures"


def load(path: Path) -> dict[str, Any]:
    """Return the YAML document at `path`."""
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def wrapped(section: str, schema: Any) -> dict[str, Any]:
    """Return an OpenAPI document using `schema` as the request body or the 200 response body."""
    body = {"content": {"application/json": {"schema": schema}}}
    if section == "request":
        operation = {"post": {"requestBody": body, "responses": {"204": {"description": "done"}}}}
    else:
        operation = {"get": {"responses": {"200": {"description": "ok", **body}}}}
    return {"paths": {"/things": operation}}


def documents(fixture: dict[str, Any], side: str) -> dict[str, Any]:
    """Return one side of a fixture pair: whole documents, or one body schema in an OpenAPI one."""
    found = {}
    for key, path in (
        ("openapi", OPENAPI),
        ("asyncapi", ASYNCAPI),
        ("request", OPENAPI),
        ("response", OPENAPI),
    ):
        if key in fixture:
            found[path] = (
                wrapped(key, fixture[key][side]) if key in ("request", "response") else fixture[key][side]
            )
    return found


def pair(fixture: dict[str, Any]) -> tuple[Specs, Specs]:
    """Return the old and the new specs of a fixture."""
    return Specs.of(documents(fixture, "old")), Specs.of(documents(fixture, "new"))


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_fixture_pair_is_classified_as_its_rule_says(path: Path) -> None:
    fixture = load(path)
    old, new = pair(fixture)
    found = sorted((c.rule, c.direction, c.breaking) for c in diff(old, new))
    assert found == sorted((rule, direction, breaking) for rule, direction, breaking in fixture["expect"])


def test_every_rule_of_the_table_has_a_fixture_pair() -> None:
    covered = {rule for path in FIXTURES.glob("*.yaml") for rule, _, _ in load(path)["expect"]}
    assert covered == set(RULES)


def test_the_contract_docs_list_every_rule() -> None:
    docs = ROOT / "docs" / "contract.md"
    section = docs.read_text(encoding="utf-8").split("## Reviewing contract changes")[1]
    section = section.split("\n## ")[0]
    assert [rule for rule in RULES if f"`{rule}`" not in section] == []


def test_the_real_specs_resolve_and_equal_themselves() -> None:
    specs = Specs.in_directory(ROOT)
    assert diff(specs, Specs.in_directory(ROOT)) == []


def test_a_shared_schema_change_is_reported_once_per_spec_with_every_use() -> None:
    old, new = pair(load(FIXTURES / "event-field-removed-in-shared-schema.yaml"))
    text = report(diff(old, new), old, new, "`base`")
    assert (
        "| `Player.seat` field removed | `field-removed` (server sends) | `GET /players/{id}` → 200 |" in text
    )
    assert "| `Player.seat` field removed | `field-removed` (server sends) | event `player.joined` |" in text
    assert "Breaking changes without a new major version: OpenAPI and AsyncAPI." in text


def test_release_notes_sort_changes_into_breaking_added_and_changed() -> None:
    old, new = pair(load(FIXTURES / "response-field-renamed.yaml"))
    notes = release_notes(diff(old, new), old, new, "`v0`")
    assert "### Breaking\n\n- OpenAPI: `name` field renamed: now `title` (`GET /things` → 200)" in notes
    assert "> Draft: raise the major version of OpenAPI" in notes


# The command on a git repository holding a copy of the real specs.


def git(root: Path, *args: str) -> str:
    """Run git in `root` and return what it prints."""
    identity = ["-c", "user.name=spec-diff", "-c", "user.email=spec-diff@example.invalid"]
    done = subprocess.run(["git", *identity, *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository on `main` whose one commit holds the real specs."""
    for folder in ("openapi", "asyncapi"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "specs")
    return tmp_path


def edit(root: Path, path: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply `change` to the spec at `path` in the working tree of `root`."""
    document = load(root / path)
    change(document)
    (root / path).write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")


def rename(schema: str, field: str, to: str) -> Callable[[dict[str, Any]], None]:
    """Return an edit renaming the property `field` of the OpenAPI schema `schema` to `to`."""

    def change(document: dict[str, Any]) -> None:
        target = document["components"]["schemas"][schema]
        target["properties"] = {to if k == field else k: v for k, v in target["properties"].items()}
        target["required"] = [to if k == field else k for k in target["required"]]

    return change


def major(version: str) -> Callable[[dict[str, Any]], None]:
    """Return an edit setting `info.version`."""
    return lambda document: document["info"].update(version=version)


def next_major(path: str) -> str:
    """Return the version one major above the real spec's at `path` (`1.4.0` -> `2.0.0`)."""
    version = str(load(ROOT / path)["info"]["version"])
    return f"{int(version.split('.')[0]) + 1}.0.0"


def spec_diff(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the command against HEAD of `root`."""
    command = [sys.executable, "-m", "tests.tools.specdiff", "--root", str(root), "--base", "HEAD"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_a_renamed_response_field_fails_until_the_major_version_is_raised(repo: Path) -> None:
    edit(repo, OPENAPI, rename("RoomPage", "next_cursor", "cursor"))
    done = spec_diff(repo)
    assert done.returncode == 1, done.stderr
    breaking = done.stdout.split("### OpenAPI: breaking")[1].split("###")[0]
    assert (
        "| `RoomPage.next_cursor` field renamed: now `cursor` | `field-renamed` (server sends) |" in breaking
    )
    edit(repo, OPENAPI, major(next_major(OPENAPI)))
    done = spec_diff(repo)
    assert done.returncode == 0, done.stdout
    assert "`RoomPage.next_cursor` field renamed" in done.stdout
    assert "Breaking changes, each under a new major version." in done.stdout


def test_a_field_shared_with_the_events_needs_both_majors_raised(repo: Path) -> None:
    edit(repo, OPENAPI, rename("Player", "seat", "position"))
    edit(repo, OPENAPI, major(next_major(OPENAPI)))
    done = spec_diff(repo)
    assert done.returncode == 1
    assert "Breaking changes without a new major version: AsyncAPI." in done.stdout
    assert (
        "| `Player.seat` field renamed: now `position` | `field-renamed` (server sends) | event `"
        in done.stdout
    )
    edit(repo, ASYNCAPI, major(next_major(ASYNCAPI)))
    assert spec_diff(repo).returncode == 0


def test_the_default_base_is_the_merge_base_with_main_else_the_previous_commit(repo: Path) -> None:
    assert default_base(repo) is None  # one commit: nothing to compare with
    (repo / "README").write_text("x", encoding="utf-8")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "second")
    first = git(repo, "rev-parse", "HEAD~1")
    assert default_base(repo) == (first, "the previous commit `HEAD~1`")
    git(repo, "checkout", "-q", "-b", "feature")
    git(repo, "commit", "-q", "--allow-empty", "-m", "on the branch")
    git(repo, "commit", "-q", "--allow-empty", "-m", "and again")
    assert default_base(repo) == (git(repo, "rev-parse", "main"), "the merge base with `main`")
