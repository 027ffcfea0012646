"""The embedded PostgreSQL used when no DATABASE_URL is given (the `pgserver` package)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server under `data_dir` and return its URL."""
    import pgserver  # imported late: only needed when no DATABASE_URL is set

    pgdata = data_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None keeps the server and its data after this process exits,
    # so a restart (or another worker) finds everything where it was.
    server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    log.info("embedded PostgreSQL at %s", pgdata)
    return uri
