"""The embedded PostgreSQL used when no DATABASE_URL is given (the `pgserver` package)."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger(__name__)
# pgserver logs every command it runs and its whole output (initdb's 30 lines) at INFO.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server under `data_dir` and return its URL.

    The server stops when the last process that asked for it exits (data stays in `data_dir`).
    """
    with warnings.catch_warnings():
        # pgserver locks in platformdirs' runtime directory, which warns on every start when
        # XDG_RUNTIME_DIR is unset (a container, a service) and then uses a private fallback
        # that works as well: nothing for the operator to do.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=UserWarning)
        import pgserver  # imported late: only needed when no DATABASE_URL is set

    pgdata = data_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    forget_dead_users(pgdata)
    # "stop": pgserver counts the processes using the server and stops it when the last one
    # exits, so it does not outlive `make run`; the data stays for the next start.
    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    log.info("embedded PostgreSQL at %s", pgdata)
    return uri


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_users(pgdata: Path) -> None:
    """Drop processes that died without exiting (kill -9) from pgserver's list of the server's
    users, or the server would wait for them and never stop."""
    handles = pgdata / ".handle_pids.json"  # pgserver's own file: a JSON list of pids
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if isinstance(pids, list):
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
