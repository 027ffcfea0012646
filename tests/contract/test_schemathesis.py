"""Schemathesis, loaded from the hand-written spec, against the running app: zero failures.

All checks, and ours (schemathesis_hooks.py: each SSE event read validates against
asyncapi.yaml); the examples, coverage, fuzzing and stateful phases; every operation, the event
stream included. The server runs in its own process on the test database, as `make run`
would serve it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SERVER_ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "100")
SEED = os.environ.get("SCHEMATHESIS_SEED", "1")


def test_the_app_conforms_to_its_hand_written_spec(server_url: str) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "--config-file",
        str(ROOT / "tests" / "contract" / "schemathesis.toml"),
        "run",
        str(ROOT / "openapi" / "openapi.yaml"),
        "--url",
        server_url,
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--no-color",
    ]
    env = {
        **os.environ,
        "ROUNDTABLE_URL": server_url,
        "ROUNDTABLE_ADMIN_TOKEN": SERVER_ADMIN_TOKEN,
        "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report, report
    print(report[-1500:])
