"""A renamed field in the spec fails the drift checks until the clients are regenerated; then they build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, require_node
from tests.tools import check_generated

SKIP = shutil.ignore_patterns("node_modules", "__pycache__", ".mypy_cache")


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command; return it finished (never raising on its exit code)."""
    return subprocess.run(
        command, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def test_a_renamed_field_needs_regenerated_clients_which_then_compile(tmp_path: Path) -> None:
    """Rename Room.player_count in a scratch copy: Python and TypeScript drift, regeneration cures both."""
    require_node()
    subprocess.run(["make", "-s", "ts-install"], cwd=ROOT, check=True, capture_output=True)
    scratch = tmp_path / "repo"
    for name in (
        "pyproject.toml",
        "openapi",
        "asyncapi",
        "backend/contract",
        "clients/python",
        "clients/typescript",
    ):
        src, dst = ROOT / name, scratch / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=SKIP)
        else:
            shutil.copy2(src, dst)
    (scratch / "clients/typescript/node_modules").symlink_to(ROOT / "clients/typescript/node_modules")
    spec = scratch / "openapi/openapi.yaml"
    spec.write_text(spec.read_text().replace("player_count", "players_count"))
    ts = scratch / "clients/typescript"

    assert check_generated.main(scratch) != 0
    drift = run(["npm", "run", "--silent", "check:generated"], ts)
    assert drift.returncode != 0
    assert "players_count" in drift.stdout + drift.stderr

    generated = run([sys.executable, "-m", "datamodel_code_generator", "--all-jobs"], scratch)
    assert generated.returncode == 0, generated.stderr
    assert run(["npm", "run", "--silent", "generate"], ts).returncode == 0
    assert check_generated.main(scratch) == 0
    assert run(["npm", "run", "--silent", "check:generated"], ts).returncode == 0

    # The regenerated clients compile: TypeScript with tsc, Python by importing and using the model.
    typecheck = run(["npm", "run", "--silent", "typecheck"], ts)
    assert typecheck.returncode == 0, typecheck.stdout + typecheck.stderr
    probe = (
        "import roundtable_client, roundtable.contract.api as api; "
        "assert 'players_count' in api.Room.model_fields and 'player_count' not in api.Room.model_fields"
    )
    imported = run(
        [sys.executable, "-c", probe], scratch / "clients/python", PYTHONPATH=str(scratch / "clients/python")
    )
    assert imported.returncode == 0, imported.stderr
