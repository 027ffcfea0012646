"""Rendered documentation of both contracts, under /docs/.

- /docs: Swagger UI; /docs/api: the API reference (ReDoc); /docs/events: the events
  (AsyncAPI's React component); /asyncapi.json: the self-contained AsyncAPI document.
- `make docs` builds static pages into `backend/docs/site/` (each with its document inlined)
  and copies the renderers' bundles
  from their pinned npm packages (clients/docs) into `backend/docs/vendor/`, so the pages
  work offline. Without it the pages are rendered here and load the same pinned renderers
  from their CDN.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from backend.core.config import PROJECT_ROOT
from backend.core.problems import AppError
from backend.docs import build
from backend.docs.bundle import bundled_asyncapi

router = APIRouter(include_in_schema=False)

VENDOR = PROJECT_ROOT / "backend" / "docs" / "vendor"
SITE = build.SITE
# Files served under /docs/assets/ once `make docs` copied them, and where else to find them.
ASSETS = {
    "swagger-ui-bundle.js": "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui-bundle.js",
    "swagger-ui.css": "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui.css",
    "redoc.standalone.js": "https://cdn.jsdelivr.net/npm/redoc@2.5.4/bundles/redoc.standalone.js",
    "asyncapi.js": "https://unpkg.com/@asyncapi/react-component@2.6.4/browser/standalone/index.js",
    "asyncapi.css": "https://unpkg.com/@asyncapi/react-component@2.6.4/styles/default.min.css",
}


class AssetNotFound(AppError):
    status = 404
    code = "not_found"


def asset_url(name: str) -> str:
    """Return where a page loads a renderer file from: here when built, else the CDN."""
    return f"/docs/assets/{name}" if (VENDOR / name).is_file() else ASSETS[name]


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """The HTTP API in Swagger UI, from the hand-written spec."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Roundtable API",
        swagger_js_url=asset_url("swagger-ui-bundle.js"),
        swagger_css_url=asset_url("swagger-ui.css"),
    )


@router.get("/docs/api", response_model=None)
async def api_reference() -> HTMLResponse | FileResponse:
    """The HTTP API reference: the page `make docs` built, else rendered by ReDoc here."""
    if (SITE / "api.html").is_file() and (VENDOR / "redoc.standalone.js").is_file():
        return FileResponse(SITE / "api.html", media_type="text/html")
    return await redoc()


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    """The HTTP API rendered by ReDoc."""
    return get_redoc_html(
        openapi_url="/openapi.json", title="Roundtable API", redoc_js_url=asset_url("redoc.standalone.js")
    )


@router.get("/asyncapi.json")
async def asyncapi_json() -> Response:
    """The event contract as one self-contained AsyncAPI 3.0 document."""
    return Response(json.dumps(bundled_asyncapi()), media_type="application/json")


@router.get("/docs/events", response_model=None)
async def events_docs() -> HTMLResponse | FileResponse:
    """The event contract rendered by AsyncAPI's React component (the built page when there is one)."""
    if (SITE / "events.html").is_file() and (VENDOR / "asyncapi.js").is_file():
        return FileResponse(SITE / "events.html", media_type="text/html")
    return HTMLResponse(build.events_page(css=asset_url("asyncapi.css"), js=asset_url("asyncapi.js")))


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    """A renderer file copied by `make docs`."""
    if name not in ASSETS or not (VENDOR / name).is_file():
        raise AssetNotFound(f"No documentation asset {name!r}; `make docs` copies them.")
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return FileResponse(VENDOR / name, media_type=media)
