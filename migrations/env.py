"""Alembic environment: async engine, the SQLModel metadata, URL from the app's settings."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import backend.persistence.tables  # noqa: F401  (registers the tables on the metadata)
from backend.core.config import get_settings
from backend.core.database_url import to_async_url
from backend.core.db import engine_connect_args

target_metadata = SQLModel.metadata


def _render_item(kind: str, obj: Any, _: AutogenContext) -> str | Literal[False]:
    # SQLModel's AutoString is a plain VARCHAR; write it so, and migrations need no sqlmodel import.
    if kind == "type" and isinstance(obj, AutoString):
        return f"sa.String({obj.length})" if obj.length else "sa.String()"
    return False


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        from backend.core.runtime import resolve_database_url

        url = resolve_database_url()
    return url


def run_migrations_offline() -> None:
    context.configure(
        url=to_async_url(_url()).render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, compare_type=True, render_item=_render_item
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    # One connection, every migration in one transaction (PostgreSQL's DDL is transactional),
    # no session state (no advisory lock, no SET): through a pooler in transaction mode as
    # well, with the app's statement settings for it (DATABASE_POOLER, backend/core/db.py).
    engine = create_async_engine(
        to_async_url(_url()),
        poolclass=NullPool,
        connect_args=engine_connect_args(get_settings().database_pooler),
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    # Called from inside a running event loop (the app's startup), alembic runs us in a thread.
    asyncio.run(run_migrations_online())
