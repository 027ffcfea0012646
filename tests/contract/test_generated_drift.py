"""`make check` fails when a spec changes and the generated code is not regenerated."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.tools import check_generated

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the specs, the generation settings and the committed generated code."""
    for rel in [*check_generated.INPUTS, *check_generated.OUTPUTS]:
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    return tmp_path


def test_committed_generated_code_matches_the_specs(checkout: Path) -> None:
    assert check_generated.main(checkout) == 0


def test_a_spec_change_without_regenerating_fails_the_check(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = checkout / "openapi" / "openapi.yaml"
    text = spec.read_text()
    changed = text.replace(
        "        is_host:\n          type: boolean\n",
        "        is_host:\n          type: boolean\n        avatar_url:\n          type: string\n",
        1,
    )
    assert changed != text
    spec.write_text(changed)
    assert check_generated.main(checkout) == 1
    report = capsys.readouterr().err
    assert "differs: backend/contract/api.py" in report
    assert "avatar_url" in report
