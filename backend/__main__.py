"""`python -m backend [serve|migrate|check-migrations]`: find or start PostgreSQL, migrate, serve."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

import uvicorn

from backend.core.config import get_settings
from backend.core.database_url import with_database
from backend.core.runtime import check_migrations, migrate, resolve_database_url
from backend.core.server import HTTP_PROTOCOL, WS_PROTOCOL, raise_descriptor_limit
from backend.core.startup import StartupError, ensure_database


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the SIGTERM it drained on; exiting through Python (not the default
    # handler) runs the exit hooks, which stop the embedded PostgreSQL this process started.
    raise SystemExit(128 + signum)


def ready_database() -> str:
    """Return the database URL, the database reachable and created if it was missing."""
    url = resolve_database_url()
    ensure_database(url)
    return url


def serve() -> int:
    """Migrate the database and serve until stopped."""
    settings = get_settings()
    if settings.workers > 1 and not settings.redis_url:
        print(
            f"WORKERS={settings.workers} needs REDIS_URL: without Redis each worker would only "
            "hear its own rooms' events. Set REDIS_URL=redis://127.0.0.1:6379/0 or use WORKERS=1.",
            file=sys.stderr,
        )
        return 2
    migrate(ready_database())
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Workers inherit it (and each raises it again at start, see backend/app.py).
    raise_descriptor_limit()
    uvicorn.run(
        "backend.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        # Frames over the limit are refused by the protocol itself (close 1009).
        ws_max_size=settings.ws_max_message_bytes,
        # httptools with a deadline on reading each request (see backend/core/server.py).
        http=HTTP_PROTOCOL,
        # The sans-I/O websockets protocol ("websockets-sansio"): keep-alive pings on loop
        # timers, not a task and queues per socket as in the legacy one; on shutdown it
        # leaves an open socket to the app, which closes it with 1001.
        ws=WS_PROTOCOL,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        # On SIGTERM, in-flight commands and streams' last writes get this long, then are cut.
        timeout_graceful_shutdown=settings.shutdown_drain_seconds,
        # The client address (rate limits per address, access logs) is the connection's peer,
        # unless the peer is a configured proxy: then it is the rightmost X-Forwarded-For entry
        # that is not one (uvicorn's ProxyHeadersMiddleware). With none configured, forwarded
        # headers are ignored: uvicorn would otherwise believe them from 127.0.0.1, and its
        # FORWARDED_ALLOW_IPS is overridden here (TRUSTED_PROXIES is the setting).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies,
    )
    return 0


def main() -> int:
    """Run the command named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m backend")
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "migrate", "check-migrations"]
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=get_settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        if args.command == "migrate":
            migrate(ready_database())
            return 0
        if args.command == "check-migrations":
            url = resolve_database_url()
            ensure_database(with_database(url, "postgres"), create=False)
            check_migrations(url)
            print("migrations match the models")
            return 0
        return serve()
    except StartupError as exc:
        # What to do, not a traceback: the cause is known and the operator can fix it.
        print(f"roundtable: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
