"""Normalise the `postgresql://` URLs operators write into what SQLAlchemy + asyncpg need."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url


def to_async_url(url: str) -> URL:
    """Return `url` with the asyncpg driver, whatever form it came in."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername != "postgresql+asyncpg":
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, not {parsed.drivername!r}")
    return parsed


def with_database(url: str, database: str) -> str:
    """Return `url` pointing at another database on the same server."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)
