"""Rendered documentation of both contracts, under /docs/, served with no other host.

- /docs: Swagger UI; /docs/api (the spec inline) and /redoc (from /openapi.json): ReDoc;
  /docs/events: the events (AsyncAPI's React component); /asyncapi.json: the
  self-contained AsyncAPI document.
- The renderers are files in `backend/docs/vendor/`, copied verbatim by `make docs` from the
  npm packages pinned in clients/docs and committed (`make check` compares them with a fresh
  copy), so serving needs neither Node nor the network: no CDN, no web font, no favicon from
  elsewhere.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from backend.core.problems import AppError
from backend.docs import build
from backend.docs.bundle import bundled_asyncapi

router = APIRouter(include_in_schema=False)

VENDOR = Path(__file__).resolve().parent / "vendor"
# What /docs/assets/ serves, by name, and as what.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "asyncapi.js": "text/javascript",
    "asyncapi.css": "text/css",
    "favicon.png": "image/png",
}
FAVICON = build.asset("favicon.png")


class AssetNotFound(AppError):
    status = 404
    code = "not_found"


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """The HTTP API in Swagger UI, from the hand-written spec."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Roundtable API",
        swagger_js_url=build.asset("swagger-ui-bundle.js"),
        swagger_css_url=build.asset("swagger-ui.css"),
        swagger_favicon_url=FAVICON,
        # No badge from the public validator (another host); operationIds are what clients call.
        swagger_ui_parameters={"validatorUrl": None, "displayOperationId": True},
    )


@router.get("/docs/api")
async def api_reference() -> HTMLResponse:
    """The HTTP API reference rendered by ReDoc, the spec inline."""
    return HTMLResponse(_api_page())


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    """The HTTP API rendered by ReDoc from /openapi.json."""
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="Roundtable API",
        redoc_js_url=build.asset("redoc.standalone.js"),
        redoc_favicon_url=FAVICON,
        with_google_fonts=False,
    )


@router.get("/asyncapi.json")
async def asyncapi_json() -> Response:
    """The event contract as one self-contained AsyncAPI 3.0 document."""
    return Response(_asyncapi_json(), media_type="application/json")


@router.get("/docs/events")
async def events_docs() -> HTMLResponse:
    """The event contract rendered by AsyncAPI's React component, the document inline."""
    return HTMLResponse(_events_page())


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    """A renderer file from backend/docs/vendor."""
    if name not in ASSETS:
        raise AssetNotFound(f"No documentation asset {name!r}.")
    return FileResponse(VENDOR / name, media_type=ASSETS[name])


# The specs are files of this checkout: read and rendered once per process.
@lru_cache(maxsize=1)
def _api_page() -> str:
    return build.api_page()


@lru_cache(maxsize=1)
def _events_page() -> str:
    return build.events_page()


@lru_cache(maxsize=1)
def _asyncapi_json() -> str:
    return json.dumps(bundled_asyncapi())
