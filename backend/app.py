"""The ASGI application: the hand-written contract, served and implemented."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import yaml
from fastapi import FastAPI, Response
from fastapi.exceptions import WebSocketRequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from backend.admin.endpoints import absent_router as no_admin_router
from backend.admin.endpoints import page_router as admin_page_router
from backend.admin.endpoints import router as admin_router
from backend.core.browsers import SecurityHeaders, cors_options
from backend.core.config import PROJECT_ROOT, Settings, get_settings
from backend.core.db import Database, create_engine
from backend.core.limits import BodyLimitMiddleware
from backend.core.logs import install_log_redaction
from backend.core.problems import install_problem_handlers
from backend.core.runtime import resolve_database_url
from backend.docs.endpoints import router as docs_router
from backend.game.endpoints import router as game_router
from backend.game.lifecycle import Lifetimes
from backend.game.scheduler import Scheduler
from backend.ops.endpoints import router as ops_router
from backend.realtime.chat_lane import ChatLane
from backend.realtime.endpoints import on_socket_validation
from backend.realtime.endpoints import router as realtime_router
from backend.realtime.streams import Realtime
from backend.rooms.endpoints import lobby_router
from backend.rooms.endpoints import router as rooms_router

OPENAPI_PATH = PROJECT_ROOT / "openapi" / "openapi.yaml"
# The playable page, built from clients/web by `make web` (committed, so no Node is needed to serve it).
STATIC_DIR = PROJECT_ROOT / "backend" / "static"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


@lru_cache
def load_openapi() -> dict[str, Any]:
    """Return the hand-written OpenAPI document."""
    document: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return document


@lru_cache
def _path_methods() -> list[tuple[re.Pattern[str], list[str]]]:
    patterns = []
    for path, item in load_openapi()["paths"].items():
        regex = re.compile("^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(path)) + "$")
        patterns.append((regex, sorted(m.upper() for m in item if m in HTTP_METHODS)))
    return patterns


def allowed_methods(path: str) -> list[str]:
    """Return the methods the spec declares for a concrete request path."""
    for regex, methods in _path_methods():
        if regex.match(path):
            return methods
    return []


def create_app(settings: Settings | None = None, database_url: str | None = None) -> FastAPI:
    """Build the app; it serves `openapi/openapi.yaml` as its spec, never a derived one."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_log_redaction()
        url = database_url or resolve_database_url()
        app.state.db = db = Database(create_engine(url, settings))
        app.state.realtime = realtime = Realtime(db, settings)
        await realtime.start()
        app.state.scheduler = scheduler = Scheduler(
            db,
            realtime,
            settings.scheduler_seconds,
            Lifetimes.of(settings),
            settings.lifecycle_sweep_seconds,
        )
        scheduler.start()
        # Thousands of open streams make CPython's cyclic collector stall the process: keep
        # what start-up made out of its reach, and let young collections run less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*settings.gc_thresholds)
        try:
            yield
        finally:
            await scheduler.stop()
            await realtime.stop()
            await db.dispose()

    app = FastAPI(
        title="Roundtable",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    install_problem_handlers(app, allowed_methods)
    app.add_exception_handler(WebSocketRequestValidationError, on_socket_validation)
    max_bytes, max_depth = settings.max_body_bytes, settings.max_json_depth
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes, max_depth=max_depth)
    app.add_middleware(SecurityHeaders)
    # Outermost of ours: the busiest HTTP command, well formed, skips the rest of the stack
    # (it sets the security headers of its answers itself).
    app.add_middleware(ChatLane, max_bytes=max_bytes, max_depth=max_depth)
    if settings.cors_origins:
        # Outside the chat lane, so its answers are readable from the listed origins too.
        app.add_middleware(CORSMiddleware, **cors_options(settings.cors_origins))
    # Routes are matched in order: the busiest (chat, streams) first.
    app.include_router(realtime_router)
    app.include_router(rooms_router)
    app.include_router(lobby_router)
    app.include_router(game_router)
    app.include_router(ops_router)
    app.include_router(docs_router)
    # Operators (`ADMIN_TOKEN`): without it, every /admin path answers 404.
    app.include_router(admin_router)
    app.include_router(admin_page_router)
    if not settings.admin_token.get_secret_value():
        app.include_router(no_admin_router)

    spec_body = json.dumps(load_openapi()).encode()

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> Response:
        return Response(spec_body, media_type="application/json")

    # The web page: not part of the API, so not in the spec.
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")

    return app
