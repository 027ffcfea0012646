"""Liveness and readiness for operators and load balancers."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from backend.contract import api
from backend.core.db import Database
from backend.core.problems import problem_response
from backend.realtime.metrics import DB_POOL_CHECKED_OUT

router = APIRouter()


@router.get("/healthz", response_model=api.Health)
async def healthz() -> api.Health:
    """Answer while the process serves requests."""
    return api.Health(status="ok")


async def _postgres_ok(db: Database) -> bool:
    try:
        async with asyncio.timeout(2), db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


async def _redis_status(url: str | None) -> api.CheckStatus:
    if not url:
        return api.CheckStatus.disabled
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
        return api.CheckStatus.ok
    except Exception:
        return api.CheckStatus.unavailable
    finally:
        await client.aclose()


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    """Return this process's metrics in the Prometheus text format."""
    pool = request.app.state.db.engine.pool
    DB_POOL_CHECKED_OUT.set(pool.checkedout())
    return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz", response_model=api.Readiness)
async def readyz(request: Request) -> api.Readiness | JSONResponse:
    """Answer 200 while PostgreSQL answers; Redis down only degrades the service (streams
    catch up from PostgreSQL by timer), so it is reported, not made a reason to stop serving."""
    postgres_ok, redis = await asyncio.gather(
        _postgres_ok(request.app.state.db), _redis_status(request.app.state.settings.redis_url)
    )
    if not postgres_ok:
        seconds = request.app.state.settings.db_retry_after_seconds
        return problem_response(
            503, "dependency_unavailable", "Unreachable: postgres.", headers={"Retry-After": str(seconds)}
        )
    degraded = ["redis"] if redis is api.CheckStatus.unavailable else []
    checks = api.Checks(postgres=api.CheckStatus.ok, redis=redis)
    return api.Readiness(status="ok", checks=checks, degraded=degraded)
