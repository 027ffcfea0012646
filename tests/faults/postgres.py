"""A PostgreSQL server of the fault tests' own, on a free port, which they restart and freeze.

The binaries are the ones the `pgserver` package ships (a dependency already: the embedded
default), so the suite needs nothing installed beyond the project's own packages. As root,
PostgreSQL refuses to run: the server then runs as pgserver's own system user, as the
embedded default does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port

SYSTEM_USER = "pgserver"  # the user pgserver itself runs PostgreSQL as, when run as root


def _bin() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in a scratch directory, listening on 127.0.0.1:`port` only."""

    pgdata: Path
    port: int
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> Path:
        return self.pgdata / "server.log"

    def _ctl(self, *args: str, timeout: float = 30) -> None:
        command = [str(_bin() / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log), "-w", *args]
        subprocess.run(command, check=True, user=self.user, timeout=timeout, capture_output=True)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._ctl("-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self, mode: str) -> None:
        """`pg_ctl restart -m <mode>`: every connection is cut; back when it answers again."""
        self._ctl("-m", mode, "restart")

    def processes(self) -> list[int]:
        """The pids of the postmaster and of its children (every backend and helper)."""
        postmaster = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with suppress(OSError):
                # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the postmaster and every backend for the block, then SIGCONT them."""
        stopped = self.processes()
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in stopped:
                with suppress(OSError):
                    os.kill(pid, signal.SIGCONT)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Create, start and finally remove a scratch PostgreSQL cluster."""
    user = None
    # Outside the test's tmp_path: PostgreSQL's own user must be able to reach its directory.
    pgdata = Path(tempfile.mkdtemp(prefix="roundtable-faults-pg-"))
    if os.geteuid() == 0:
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(SYSTEM_USER)
        assert entry is not None
        ensure_prefix_permissions(_bin())
        ensure_folder_permissions(_bin(), 0o555)
        ensure_folder_permissions(_bin().parent / "lib", 0o444)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
        user = SYSTEM_USER
    server = PostgresServer(pgdata, free_port(), user)
    initdb = [str(_bin() / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
    subprocess.run([*initdb, "--no-sync"], check=True, user=user, capture_output=True, timeout=60)
    server.start()
    try:
        yield server
    finally:
        with suppress(OSError, ValueError):
            for pid in server.processes():
                os.kill(pid, signal.SIGCONT)
        with suppress(subprocess.SubprocessError):
            server.stop("immediate")
        shutil.rmtree(pgdata, ignore_errors=True)


def wait_answering(server: PostgresServer, timeout: float = 30) -> None:
    """Wait until the server accepts connections (pg_isready)."""
    deadline = time.monotonic() + timeout
    command = [str(_bin() / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port), "-q"]
    while subprocess.run(command, check=False).returncode != 0:
        assert time.monotonic() < deadline, "PostgreSQL did not come back"
        time.sleep(0.05)
