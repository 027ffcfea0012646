"""Both contracts are served as documentation, and the AsyncAPI one self-contained."""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import pytest

from backend.docs import build
from backend.docs.bundle import bundle, bundled_asyncapi, load_openapi

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


def test_make_docs_pages_carry_their_documents_and_need_no_other_host() -> None:
    """The static pages inline the whole spec and load their renderer from this server only."""
    api, events = build.api_page(), build.events_page()
    assert inlined(api) == load_openapi()
    assert inlined(events) == bundled_asyncapi()
    for page in (api, events):
        sources = [part.split('"')[1] for part in page.split("src=")[1:]]
        assert sources
        assert all(src.startswith("/docs/assets/") for src in sources)
