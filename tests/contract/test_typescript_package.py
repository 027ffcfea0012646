"""The TypeScript client as another team gets it: npm pack's tarball in a fresh project, plain Node."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import require_node

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "typescript"
# A committed consumer project: package.json and package-lock.json pin what it installs from the
# registry (TypeScript, @types/node, eventsource, and the client's own dependencies), so CI's npm
# cache serves it; the tarball adds nothing that is not already in that lock.
CONSUMER = Path(__file__).with_name("typescript_package")
# `from "x"` or `import("x")` of a bare specifier (not ./, not node:).
BARE_IMPORT = re.compile(r"""(?:from\s+|import\()["']((?:@[^/"']+/)?[^./"'][^/"']*)[^"']*["']""")
# Doc comments show imports too (`import { EventSource } from "eventsource"` as advice).
COMMENT = re.compile(r"/\*.*?\*/|^\s*//.*?$", re.DOTALL | re.MULTILINE)


def run(command: list[str], cwd: Path, timeout: float = 120, **env: str) -> str:
    """Run a command and return its output; fail the test with that output when it fails."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{output}"
    return done.stdout


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the package (its prepack script) and return the tarball npm pack made."""
    npm = require_node()
    make = shutil.which("make")
    assert make is not None, "make is needed to install the TypeScript client"
    run([make, "-s", "ts-install"], ROOT, timeout=600)
    destination = tmp_path_factory.mktemp("pack")
    packed: list[dict[str, Any]] = json.loads(
        run([npm, "pack", "--json", "--pack-destination", str(destination)], PACKAGE)
    )
    filename: str = packed[0]["filename"]
    return destination / filename


def packed_files(tarball: Path) -> dict[str, str]:
    """Return the tarball's text files by their path inside the package."""
    with tarfile.open(tarball) as archive:
        return {
            member.name.removeprefix("package/"): archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in archive.getmembers()
            if member.isfile()
        }


def test_the_tarball_is_an_esm_package_whose_version_is_the_specs(tarball: Path) -> None:
    files = packed_files(tarball)
    manifest = json.loads(files["package.json"])
    spec = yaml.safe_load((ROOT / "openapi" / "openapi.yaml").read_text())
    assert manifest["version"] == spec["info"]["version"]
    assert manifest.get("private") is not True
    assert manifest["type"] == "module"
    entry = manifest["exports"]["."]
    assert entry["types"] == manifest["types"] == "./dist/index.d.ts"
    assert entry["import"] == "./dist/index.js"
    assert {"dist/index.js", "dist/index.d.ts", "README.md"} <= files.keys()

    # Every package the built code or its types import is a dependency (not a dev one), and the
    # consumer fixture pins that same version, so installing the tarball fetches nothing new.
    imported = {
        match
        for name, text in files.items()
        if name.startswith("dist/") and name.endswith((".js", ".d.ts"))
        for match in BARE_IMPORT.findall(COMMENT.sub("", text))
    }
    assert imported, "the build imports no package: the pattern is broken"
    dependencies: dict[str, str] = manifest.get("dependencies", {})
    assert imported == set(dependencies), (imported, dependencies)
    lock = json.loads((CONSUMER / "package-lock.json").read_text())
    for name, version in dependencies.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name


def test_the_installed_tarball_type_checks_strictly_and_plays_with_plain_node(
    server_url: str, tarball: Path, tmp_path: Path
) -> None:
    npm = require_node()
    project = tmp_path / "consumer"
    project.mkdir()
    for name in ("package.json", "package-lock.json", "tsconfig.json", "play.ts"):
        shutil.copy(CONSUMER / name, project / name)

    quiet = ["--no-audit", "--no-fund", "--loglevel=error"]
    run([npm, "ci", "--prefer-offline", *quiet], project, timeout=300)
    # --offline: everything the tarball needs is already in the fixture's lock.
    run([npm, "install", "--no-save", "--offline", *quiet, str(tarball)], project)
    installed = json.loads((project / "node_modules/@roundtable/client/package.json").read_text())
    assert installed["version"] == json.loads(packed_files(tarball)["package.json"])["version"]

    # Strict, with the package's .d.ts checked too (skipLibCheck off): one tsc run both checks
    # (a non-zero exit on any error) and emits the JavaScript that plain node runs below.
    run([str(project / "node_modules/.bin/tsc"), "--strict", "-p", "."], project)
    node = shutil.which("node")
    assert node is not None
    output = run([node, "out/play.js"], project, ROUNDTABLE_URL=server_url)
    result = json.loads(output.strip().splitlines()[-1])

    assert result["joined"] == ["Bea", "Cy", "Dee"]
    assert result["phases"] == ["night", "day"]
    # The host's own stream: public events and its own role, whatever role it drew.
    types: list[str] = result["types"]
    assert types[:5] == ["player.joined"] * 3 + ["game.started", "role.assigned"], types
    assert result["seqs"] == sorted(set(result["seqs"])), "each event once, in seq order"
    assert result["phase"] == "day", "the night closed on the actions its options offered"
    assert result["refused"] == {"name": "RoundtableError", "status": 409, "code": "phase_closed"}
