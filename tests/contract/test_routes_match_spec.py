"""The app implements exactly the operations of openapi/openapi.yaml, and serves that file.

FastAPI's own, code-derived description of the routes (`app.openapi()`, never served) is
what we compare with the hand-written spec.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from backend.app import load_openapi

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Return {(METHOD, path): operation} of an OpenAPI document."""
    return {
        (method.upper(), path): {**op, "parameters": item.get("parameters", []) + op.get("parameters", [])}
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def parameters(document: dict[str, Any], op: dict[str, Any]) -> set[tuple[str, str]]:
    """Return {(in, name)} of an operation's parameters, resolving local $refs."""
    found = set()
    for param in op["parameters"]:
        if "$ref" in param:
            param = document["components"]["parameters"][param["$ref"].rsplit("/", 1)[-1]]
        if param["in"] != "header":
            found.add((param["in"], param["name"]))
    # A token the spec takes as an apiKey security scheme in the query is a query parameter to the app.
    schemes = document.get("components", {}).get("securitySchemes", {})
    for requirement in op.get("security", []):
        for name in requirement:
            scheme = schemes.get(name, {})
            if scheme.get("type") == "apiKey" and scheme.get("in") == "query":
                found.add(("query", scheme["name"]))
    return found


async def test_every_spec_operation_has_a_route_and_no_route_is_unspecified(app: FastAPI) -> None:
    spec, served = operations(load_openapi()), operations(app.openapi())
    assert set(spec) - set(served) == set(), "operations in the spec that the app does not serve"
    assert set(served) - set(spec) == set(), "routes the app serves that the spec does not declare"


async def test_parameters_are_named_as_in_the_spec(app: FastAPI) -> None:
    spec_doc, app_doc = load_openapi(), app.openapi()
    spec, served = operations(spec_doc), operations(app_doc)
    for key, op in spec.items():
        assert parameters(spec_doc, op) == parameters(app_doc, served[key]), key


async def test_the_served_spec_is_the_hand_written_file(client: httpx.AsyncClient) -> None:
    served = (await client.get("/openapi.json")).json()
    assert served == load_openapi()
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text
