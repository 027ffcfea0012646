"""Starting the server as `make run` does: a wrong DATABASE_URL says what to do in a few lines,
a missing database is created, the embedded PostgreSQL stops with the server, and
`check-migrations` works in a database of its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from backend.core import runtime
from backend.core.database_url import with_database
from backend.core.embedded import forget_dead_users
from backend.core.runtime import asyncpg_connect_args, drop_database
from tests.conftest import ROOT, TEST_DATABASE, postgres_server_url
from tests.support import free_port, wait_until_up


def run_backend(command: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m backend <command>` (what `make run` runs) with `env` over the test's environment."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "WORKERS")}
    environ |= {"PORT": str(free_port()), "LOG_LEVEL": "info", **env}
    return subprocess.run(
        [sys.executable, "-m", "backend", command],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def fetch(server_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """Run `query` on the `postgres` database of the test server."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(**asyncpg_connect_args(with_database(server_url, "postgres")))
        try:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows
        finally:
            await conn.close()

    return asyncio.run(run())


def database_exists(server_url: str, name: str) -> bool:
    return bool(fetch(server_url, "SELECT 1 FROM pg_database WHERE datname = $1", name))


def running(pid: int) -> bool:
    """Return whether process `pid` runs (a zombie nobody reaped yet has stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_short(result: subprocess.CompletedProcess[str], *said: str) -> None:
    """The start failed with at most 3 lines on stderr, no traceback, each of `said` in them."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stderr
    assert 1 <= len(lines) <= 3, result.stderr
    assert "Traceback" not in result.stderr
    for text in said:
        assert text in result.stderr, result.stderr


@pytest.mark.slow  # starts the server process
def test_a_wrong_database_url_says_in_a_few_lines_what_to_do() -> None:
    """Refused, unknown host, not PostgreSQL: each a short message naming what to fix."""
    port = free_port()  # nothing listens there
    wrong = {
        "refused": f"postgresql://postgres:secret@127.0.0.1:{port}/x",
        "unknown host": "postgresql://postgres@no-such-host.invalid:5432/x",
        "not postgresql": "mysql://root@127.0.0.1/x",
    }
    # Started together: each start is mostly Python importing the server.
    with ThreadPoolExecutor(len(wrong)) as pool:
        started = {
            what: pool.submit(run_backend, "serve", {"DATABASE_URL": url}) for what, url in wrong.items()
        }
        results = {what: future.result() for what, future in started.items()}
    assert_short(results["refused"], f"127.0.0.1:{port}", "is it running?", "DATABASE_URL")
    assert "secret" not in results["refused"].stderr
    assert_short(results["unknown host"], "'no-such-host.invalid'", "host name")
    assert_short(results["not postgresql"], "postgresql://")


@pytest.mark.slow  # starts the server process
def test_a_missing_database_is_created_when_the_user_may() -> None:
    server = postgres_server_url()
    name = f"{TEST_DATABASE}_created"
    drop_database(server, name)
    try:
        result = run_backend("migrate", {"DATABASE_URL": with_database(server, name)})
        assert result.returncode == 0, result.stderr
        assert database_exists(server, name)
        assert f'created database "{name}"' in result.stderr
    finally:
        drop_database(server, name)


@pytest.mark.slow  # starts the server process
def test_a_missing_database_the_user_may_not_create_says_create_it() -> None:
    server = postgres_server_url()
    role = f"{TEST_DATABASE}_nocreate"
    fetch(server, f'DROP ROLE IF EXISTS "{role}"')
    fetch(server, f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        # As that role, however the server's URL names its user (the embedded one's has an
        # empty password and a socket path): a plain text swap would leave the superuser in.
        url = (
            make_url(with_database(server, f"{TEST_DATABASE}_missing"))
            .set(username=role, password=None)
            .render_as_string(hide_password=False)
        )
        result = run_backend("serve", {"DATABASE_URL": url})
        assert_short(result, f'"{TEST_DATABASE}_missing" does not exist', "Create it", "createdb")
    finally:
        fetch(server, f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.slow  # starts the server process
def test_the_embedded_postgresql_stops_with_the_server_and_no_warning_is_printed(tmp_path: Path) -> None:
    """Without DATABASE_URL the server starts its own PostgreSQL; SIGTERM stops both."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)  # as root, pgserver runs PostgreSQL as its own user, who must get in
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "WORKERS")}
    environ |= {"PORT": str(port), "DATA_DIR": str(data)}
    environ.pop("XDG_RUNTIME_DIR", None)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve"], cwd=ROOT, env=environ, stdout=out, stderr=out
        )
    try:
        # Generous: a first start runs initdb, and pgserver holds one lock per machine around
        # starting and stopping, which other checkouts' embedded servers may hold a while.
        wait_until_up(f"http://127.0.0.1:{port}", process, log, timeout=180)
        postmaster = int((data / "pgdata" / "postmaster.pid").read_text().split()[0])
        assert running(postmaster)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not (data / "pgdata" / "postmaster.pid").exists(), log.read_text()
    assert not running(postmaster), log.read_text()
    assert "XDG_RUNTIME_DIR" not in log.read_text()


def test_check_migrations_uses_a_database_of_its_own_and_drops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    server = postgres_server_url()
    monkeypatch.setenv("TEST_DATABASE_NAME", f"{TEST_DATABASE}_x")
    assert runtime.migrations_check_database() == f"{TEST_DATABASE}_x_migrations"
    monkeypatch.delenv("TEST_DATABASE_NAME")
    assert runtime.migrations_check_database() != runtime.migrations_check_database()

    monkeypatch.setenv("TEST_DATABASE_NAME", f"{TEST_DATABASE}_x")
    checked: list[str] = []
    migrate = runtime.migrate

    def spy(url: str) -> None:
        checked.append(url)
        assert database_exists(server, f"{TEST_DATABASE}_x_migrations")
        migrate(url)

    monkeypatch.setattr(runtime, "migrate", spy)
    runtime.check_migrations(server)
    assert checked == [with_database(server, f"{TEST_DATABASE}_x_migrations")]
    assert not database_exists(server, f"{TEST_DATABASE}_x_migrations")


def test_a_killed_user_of_the_embedded_postgresql_does_not_keep_it_running(tmp_path: Path) -> None:
    """A process killed with -9 never leaves pgserver's list of users; the next start drops it,
    so the last server to exit still stops PostgreSQL."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([gone.pid, os.getpid()]))
    forget_dead_users(tmp_path)
    assert json.loads(handles.read_text()) == [os.getpid()]
