"""Every schema the events use has a name: AsyncAPI Modelina generates no anonymous model.

Schemas the AsyncAPI file takes from the OpenAPI one carry their component name as `title`,
since a generator reading asyncapi.yaml sees them only through `$ref`s into another file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

LINT = ROOT / "tests" / "tools" / "lint"
SPECS = (Path("openapi/openapi.yaml"), Path("asyncapi/asyncapi.yaml"))


@pytest.fixture(scope="module", autouse=True)
def generator_installed() -> None:
    """Install the pinned spec tools, Modelina among them (npm ci), when needed."""
    installed = subprocess.run(
        ["make", "-s", "lint-install"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr


def model_names(root: Path) -> list[str]:
    """Return the names of the models Modelina generates from `root`/asyncapi/asyncapi.yaml."""
    done = subprocess.run(
        ["node", str(LINT / "modelina-names.mjs"), str(root / "asyncapi" / "asyncapi.yaml")],
        cwd=LINT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    names: list[str] = json.loads(done.stdout)
    return names


def test_modelina_generates_one_named_model_per_schema() -> None:
    names = model_names(ROOT)
    assert [name for name in names if name.startswith("AnonymousSchema")] == []
    assert sorted({name for name in names if names.count(name) > 1}) == []
    # The concepts the issue found anonymous several times, each now one model of its name.
    for concept in ("Player", "Role", "Team", "RoomState", "Snapshot"):
        assert names.count(concept) == 1, (concept, names)


def test_a_schema_without_its_name_gives_an_anonymous_model(tmp_path: Path) -> None:
    for path in SPECS:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, tmp_path / path)
    openapi = tmp_path / "openapi" / "openapi.yaml"
    text = openapi.read_text(encoding="utf-8")
    assert text.count("      title: Team\n") == 1
    openapi.write_text(text.replace("      title: Team\n", ""), encoding="utf-8")
    assert any(name.startswith("AnonymousSchema") for name in model_names(tmp_path))
