"""Regenerate from the specs into a temporary place; fail if the committed code differs."""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Generation reads its settings from the nearest pyproject.toml, the SDK's own for its files.
INPUTS = ["pyproject.toml", "clients/python/pyproject.toml", "openapi", "asyncapi"]
# The generated trees; every file in them must match what generation produces now.
OUTPUTS = [
    "backend/contract/api.py",
    "backend/contract/events.py",
    "clients/python/roundtable/contract/api.py",
    "clients/python/roundtable/contract/events.py",
    "clients/python/roundtable_client",
]


def files_under(base: Path, rel: str) -> set[str]:
    """Return the paths, relative to `base`, of the files at or under `rel`."""
    path = base / rel
    if path.is_file():
        return {rel}
    if not path.exists():
        return set()
    return {str(p.relative_to(base)) for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def main(root: Path = ROOT) -> int:
    """Return 0 when the generated code committed under `root` is what its specs produce."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in INPUTS:
            src = root / name
            if src.is_dir():
                shutil.copytree(src, work / name)
            else:
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, work / name)
        done = subprocess.run(
            [sys.executable, "-m", "datamodel_code_generator", "--all-jobs"],
            cwd=work,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            return done.returncode
        drift: list[str] = []
        for rel in OUTPUTS:
            fresh, committed = files_under(work, rel), files_under(root, rel)
            for missing in sorted(fresh - committed):
                drift.append(f"not committed: {missing}")
            for extra in sorted(committed - fresh):
                drift.append(f"no longer generated: {extra}")
            for common in sorted(fresh & committed):
                a = (root / common).read_text(encoding="utf-8").splitlines(keepends=True)
                b = (work / common).read_text(encoding="utf-8").splitlines(keepends=True)
                if a != b:
                    diff = "".join(difflib.unified_diff(a, b, f"committed/{common}", f"generated/{common}"))
                    drift.append(f"differs: {common}\n{diff}")
    if drift:
        print(
            "Generated code is out of date with the specs; run `make generate` and commit:", file=sys.stderr
        )
        for line in drift:
            print(line, file=sys.stderr)
        return 1
    print("generated code matches the specs")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
