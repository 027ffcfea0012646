"""Where the database is, creating scratch databases, and bringing schemas up to date."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from backend.core.config import PROJECT_ROOT, get_settings
from backend.core.database_url import with_database
from backend.core.db import asyncpg_args
from backend.core.embedded import embedded_database_url


def resolve_database_url() -> str:
    """Return DATABASE_URL, or the URL of the embedded server when it is unset."""
    url = os.environ.get("DATABASE_URL") or get_settings().database_url
    if url:
        return url
    url = embedded_database_url(get_settings().data_dir)
    # Workers started after us (uvicorn --workers) find the same server without a new start.
    os.environ["DATABASE_URL"] = url
    return url


def alembic_config(database_url: str) -> Config:
    """Return the Alembic config from pyproject.toml, pointed at `database_url`."""
    config = Config(toml_file=str(PROJECT_ROOT / "pyproject.toml"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str) -> None:
    """Apply every migration not yet applied."""
    command.upgrade(alembic_config(database_url), "head")


def migrations_check_database() -> str:
    """Return the scratch database name of `check-migrations`: this checkout's own."""
    # Derived from TEST_DATABASE_NAME, which already tells checkouts sharing a server apart;
    # without it a fresh name, so two checks never drop each other's database.
    base = os.environ.get("TEST_DATABASE_NAME")
    return f"{base}_migrations" if base else f"roundtable_migrations_check_{uuid.uuid4().hex[:8]}"


def check_migrations(database_url: str, scratch_name: str | None = None) -> None:
    """Fail unless the migrations, applied to an empty database, match the models."""
    name = scratch_name or migrations_check_database()
    scratch = recreate_database(database_url, name)
    try:
        migrate(scratch)
        command.check(alembic_config(scratch))
    finally:
        drop_database(database_url, name)


def asyncpg_connect_args(database_url: str) -> dict[str, Any]:
    """Return asyncpg.connect()'s arguments for a database URL (a socket directory in
    `?host=` included, as the embedded server's URL has), and no statement cache through a
    pooler in transaction mode (DATABASE_POOLER, see backend/core/db.py)."""
    url = make_url(database_url)
    return {
        "user": url.username,
        "password": url.password,
        "host": url.query.get("host", url.host),
        "port": url.port,
        "database": url.database,
        **asyncpg_args(get_settings().database_pooler),
    }


def _on_server(server_url: str, *statements: str) -> None:
    """Run `statements` on the `postgres` database of the server of `server_url`."""

    async def run() -> None:
        conn = await asyncpg.connect(**asyncpg_connect_args(with_database(server_url, "postgres")))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` on the server of `server_url`, if it is there."""
    _on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def recreate_database(server_url: str, name: str) -> str:
    """Drop and create database `name` on the server of `server_url`; return its URL."""
    _on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)
