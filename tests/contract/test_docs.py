"""Both contracts are served as documentation, and the AsyncAPI one self-contained."""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import httpx
import pytest

from backend.docs import build
from backend.docs.bundle import bundle, bundled_asyncapi, load_openapi
from backend.docs.endpoints import ASSETS, VENDOR

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from asyncapi3 import AsyncAPI3


def local_refs(node: Any) -> list[str]:
    """Return every $ref in a document."""
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in local_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in local_refs(v)]
    return []


def pointer(document: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON pointer."""
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


async def test_the_docs_pages_are_served(client: httpx.AsyncClient) -> None:
    """Swagger UI, ReDoc and the AsyncAPI page answer with HTML that runs their renderer."""
    for path, needle in (
        ("/docs", "/openapi.json"),
        ("/redoc", "/openapi.json"),
        ("/docs/api", "redoc"),
        ("/docs/events", "AsyncApiStandalone"),
    ):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert needle in page.text


async def test_the_served_asyncapi_document_is_valid_and_self_contained(client: httpx.AsyncClient) -> None:
    """Every $ref of /asyncapi.json points inside it, and it is a valid AsyncAPI 3.0 document."""
    document = (await client.get("/asyncapi.json")).json()
    refs = local_refs(document)
    assert refs
    assert all(ref.startswith("#/") for ref in refs)
    for ref in refs:
        pointer(document, ref)
    AsyncAPI3.model_validate(document)
    assert document["components"]["schemas"]["Player"]["required"][0] == "id"


def test_a_schema_defined_in_both_specs_is_refused() -> None:
    """Bundling never silently picks one of two different definitions."""
    asyncapi = {
        "components": {
            "schemas": {
                "Player": {"type": "string"},
                "Joined": {"$ref": "../openapi/openapi.yaml#/components/schemas/Player"},
            }
        }
    }
    openapi = {"components": {"schemas": {"Player": {"type": "object"}}}}
    with pytest.raises(ValueError, match="Player"):
        bundle(asyncapi, openapi)


def inlined(page: str) -> Any:
    """Return the JSON document a built page carries inline."""
    start = page.index('<script id="document" type="application/json">') + len(
        '<script id="document" type="application/json">'
    )
    return json.loads(page[start : page.index("</script>", start)])


def test_the_inline_pages_carry_their_documents() -> None:
    """/docs/api and /docs/events inline the whole spec."""
    assert inlined(build.api_page()) == load_openapi()
    assert inlined(build.events_page()) == bundled_asyncapi()


async def test_every_docs_page_loads_its_files_from_this_server(client: httpx.AsyncClient) -> None:
    """No page names another host, and every file it names is served (from backend/docs/vendor)."""
    for path in ("/docs", "/docs/api", "/redoc", "/docs/events"):
        page = (await client.get(path)).text
        markup = page.split('<script id="document"')[0]  # the inline spec may name hosts
        assert "http://" not in markup, path
        assert "https://" not in markup, path
        assets = [f for f in re.findall(r'(?:src|href)="([^"]+)"', page) if f.startswith("/docs/assets/")]
        assert assets, path
        for url in assets:
            answer = await client.get(url)
            assert answer.status_code == 200, url
            assert answer.content == (VENDOR / url.removeprefix("/docs/assets/")).read_bytes()
    assert (await client.get("/docs/assets/README.md")).status_code == 404  # only the renderers


def test_every_served_asset_is_committed() -> None:
    """Serving needs no `make docs`: each renderer file is in the repository."""
    for name in ASSETS:
        assert (VENDOR / name).stat().st_size > 0, name
