"""The TypeScript client (clients/typescript) against the real server: its Node test, typed end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support import require_node

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "typescript"


def test_the_typescript_client_creates_joins_streams_and_chats(server_url: str) -> None:
    npm = require_node()
    make = shutil.which("make")
    assert make is not None, "make is needed to install the TypeScript client"
    # npm ci, only when node_modules is missing or older than package.json / package-lock.json.
    installed = subprocess.run(
        [make, "-s", "ts-install"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    done = subprocess.run(
        [npm, "test"],
        cwd=PACKAGE,
        env={**os.environ, "ROUNDTABLE_URL": server_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # Every test ran: none skipped for want of the server URL.
    assert "# fail 0" in output, output
    assert "# skipped 0" in output, output
