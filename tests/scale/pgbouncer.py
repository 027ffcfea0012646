"""A PgBouncer of the test's own (Debian's, /usr/sbin/pgbouncer, 1.18 on bookworm), pooling by
transaction in front of the tests' PostgreSQL, on a free port, its config in a scratch directory.

PgBouncer refuses to run as root: as root it is started with `-u nobody` (it drops to that user
once it has read its config), so the scratch directory is readable by everyone and the log goes
to its stderr, into a file the test opens. Missing, the tests that need it skip, but fail in CI
(`.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support import ROOT, free_port, require_binary, wait_for_port

PGBOUNCER = Path("/usr/sbin/pgbouncer")
PGBOUNCER_INI = ROOT / "deploy" / "pgbouncer.ini"
# What a statement prepared on one server connection and run on another says (issue 18).
PREPARED = re.compile(r"prepared statement|InvalidSQLStatementName|DuplicatePreparedStatement", re.I)


def require_pgbouncer() -> str:
    """Return PgBouncer's path; without it skip, but fail in CI, whose `.ci/run` installs it."""
    why = f"{PGBOUNCER} is missing: apt-get install -y pgbouncer (.ci/run does)"
    return require_binary(PGBOUNCER.name, why, str(PGBOUNCER.parent))


@dataclass
class PgBouncer:
    """One PgBouncer process listening on 127.0.0.1:`port`, its output in `log`."""

    port: int
    workdir: Path
    log: Path
    process: subprocess.Popen[bytes]
    pool_size: int

    def url(self, database: str, user: str = "postgres") -> str:
        """The URL of `database` through this PgBouncer."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


# The names deploy/pgbouncer.ini has envsubst fill in, and only those.
INI_VARIABLES = (
    "DATABASES",
    "LISTEN_ADDR",
    "LISTEN_PORT",
    "UNIX_SOCKET_DIR",
    "AUTH_TYPE",
    "AUTH_FILE",
    "LOGFILE",
    "PIDFILE",
    "POOL_SIZE",
)


def _config(server_url: str, port: int, workdir: Path, pool_size: int) -> tuple[str, str]:
    """Return deploy/pgbouncer.ini rendered for a PgBouncer in front of `server_url`'s server
    (any database on it, trusted, on 127.0.0.1:`port`, logging to its stderr), and its auth file."""
    url = make_url(server_url)
    host = url.query.get("host", url.host) or "127.0.0.1"
    server = f"host={host} port={url.port or 5432} user={url.username or 'postgres'}"
    if url.password:
        server += f" password={url.password}"
    values = {
        "DATABASES": f"* = {server}",
        "LISTEN_ADDR": "127.0.0.1",
        "LISTEN_PORT": str(port),
        "UNIX_SOCKET_DIR": "",
        "AUTH_TYPE": "trust",
        "AUTH_FILE": str(workdir / "userlist.txt"),
        "LOGFILE": "",
        "PIDFILE": "",
        "POOL_SIZE": str(pool_size),
    }
    ini = PGBOUNCER_INI.read_text()
    for name in INI_VARIABLES:
        ini = ini.replace("${" + name + "}", values[name])
    left = re.findall(r"\$\{[A-Z_]+\}", ini)
    assert not left, f"deploy/pgbouncer.ini names variables the docs do not: {left}"
    users = f'"{url.username or "postgres"}" ""\n'
    return ini, users


@contextmanager
def pgbouncer(server_url: str, log: Path, pool_size: int = 5) -> Iterator[PgBouncer]:
    """Run PgBouncer in transaction mode in front of the PostgreSQL server of `server_url`
    (any database on it, the client's user), `pool_size` server connections per database."""
    binary = require_pgbouncer()
    workdir = Path(tempfile.mkdtemp(prefix="roundtable-pgbouncer-"))
    workdir.chmod(0o755)  # read by `nobody` when started as root
    port = free_port()
    ini, users = _config(server_url, port, workdir, pool_size)
    (workdir / "pgbouncer.ini").write_text(ini)
    (workdir / "userlist.txt").write_text(users)
    command = [binary, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]  # "PgBouncer should not run as root"
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    bouncer = PgBouncer(port, workdir, log, process, pool_size)
    try:
        wait_for_port(port, process, f"pgbouncer (log: {log})")
        yield bouncer
    finally:
        if process.poll() is None:
            process.terminate()  # SIGTERM: PgBouncer closes its connections and exits
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def assert_bouncer_clean(bouncer: PgBouncer) -> None:
    found = bouncer.log_text()
    assert not PREPARED.search(found), found[-5000:]
    assert not re.search(r"\b(ERROR|WARNING|FATAL)\b", found), found[-5000:]
