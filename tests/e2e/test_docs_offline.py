"""The documentation pages render in Chromium with no network but the server itself.

Every request to another host is aborted (and Chromium resolves no host name at all), so a
renderer, a stylesheet, a web font or a favicon still taken from a CDN shows up as a blank
page or a blocked request. Swagger UI (/docs) and ReDoc (/docs/api with the spec inline,
/redoc from /openapi.json) must show every operation of openapi/openapi.yaml by operationId
and summary; the AsyncAPI page (/docs/events) every message of asyncapi/asyncapi.yaml with
its title and payload, and every operation. The lists come from the spec files, so the test
follows the contract as it grows. Headless Chromium is Debian's (/usr/bin/chromium).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.e2e.test_web_game import CHROMIUM, require_chromium
from tests.support import ROOT, serve

RENDER_MS = 30_000
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# ReDoc's sidebar footer has Redocly's logo hard-coded (an <img> from their CDN, hidden when
# it fails to load). The docs' Content-Security-Policy refuses it before any request is made.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

# Operations (operationId) whose Swagger UI block does not show that operationId and summary.
SWAGGER_MISSING = """(ops) => {
  const shown = new Set([...document.querySelectorAll('.opblock')].map((block) => {
    const text = (selector) => (block.querySelector(selector)?.textContent ?? '').trim();
    return text('.opblock-summary-operation-id') + '\\n' + text('.opblock-summary-description');
  }));
  return ops.filter(([id, summary]) => !shown.has(id + '\\n' + summary)).map(([id]) => id);
}"""

# Operations whose ReDoc section (id "operation/<operationId>") is absent or not titled by its summary.
REDOC_MISSING = """(ops) => ops.filter(([id, summary]) => {
  const title = document.getElementById('operation/' + id)?.querySelector('h2');
  return !title || title.textContent.trim() !== summary;
}).map(([id]) => id)"""

# Messages (component keys) without their block, title and payload; operations without theirs.
ASYNCAPI_MISSING = """([messages, operations]) => [
  ...messages.filter(([key, title]) => {
    const block = document.getElementById('message-' + key);
    return !block || !block.textContent.includes(title)
      || !block.textContent.includes('Message ID' + key)
      || !document.getElementById('message-' + key + '-payload');
  }).map(([key]) => 'message ' + key),
  ...operations.filter(([action, key]) => !document.getElementById('operation-' + action + '-' + key))
    .map(([, key]) => 'operation ' + key),
]"""


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    return document


def openapi_operations() -> list[tuple[str, str]]:
    """Return (operationId, summary) of every operation in the OpenAPI spec."""
    paths: dict[str, dict[str, Any]] = load("openapi/openapi.yaml")["paths"]
    return [
        (operation["operationId"], operation["summary"])
        for item in paths.values()
        for method, operation in item.items()
        if method in METHODS
    ]


def asyncapi_items() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Return (key, title or name) of every message, and (action, key) of every operation."""
    document = load("asyncapi/asyncapi.yaml")
    messages = [
        (key, message.get("title") or message["name"])
        for key, message in document["components"]["messages"].items()
    ]
    operations = [(operation["action"], key) for key, operation in document["operations"].items()]
    return messages, operations


@dataclass
class Offline:
    """What a page tried that did not stay on the server."""

    origin: str
    blocked: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # Content-Security-Policy violations
    errors: list[str] = field(default_factory=list)  # uncaught exceptions

    def violation(self, text: str) -> None:
        self.refused.append(text)

    async def route(self, route: Route) -> None:
        url = route.request.url
        if url == self.origin or url.startswith(self.origin + "/"):
            await route.continue_()
        else:
            self.blocked.append(url)
            await route.abort("internetdisconnected")


async def offline_context(context: BrowserContext, seen: Offline) -> None:
    await context.route("**/*", seen.route)
    await context.expose_function("reportViolation", seen.violation)
    await context.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.reportViolation(e.violatedDirective + ' ' + e.blockedURI))"
    )


async def wait_for_nothing_missing(page: Page, script: str, arg: Any) -> list[str]:
    """Wait until `script(arg)` finds nothing missing; return what it still misses at the deadline."""
    with contextlib.suppress(PlaywrightTimeout):
        await page.wait_for_function(f"(arg) => ({script})(arg).length === 0", arg=arg, timeout=RENDER_MS)
    missing: list[str] = await page.evaluate(script, arg)
    return missing


# Each page, and what finds the operations (or messages) it does not show.
PAGES = {
    "/docs": SWAGGER_MISSING,
    "/docs/api": REDOC_MISSING,
    "/redoc": REDOC_MISSING,
    "/docs/events": ASYNCAPI_MISSING,
}


def expected(path: str) -> Any:
    """Return what the page at `path` must show, as its script takes it."""
    return list(asyncapi_items()) if path == "/docs/events" else openapi_operations()


@pytest.fixture(scope="module")
def docs_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served in its own process, as `make run` serves it."""
    log: Path = tmp_path_factory.mktemp("docs") / "server.log"
    with serve(database_url, log) as server:
        yield server.url
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium that resolves no host name: a request the routes missed could not leave."""
    require_chromium()
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.mark.parametrize("path", list(PAGES))
async def test_the_docs_pages_render_every_operation_with_the_network_blocked(
    docs_server: str, browser: Browser, path: str
) -> None:
    """The page shows everything its spec defines, asking no other host for anything."""
    wanted = expected(path)
    assert all(wanted), "nothing to look for"
    seen = Offline(docs_server)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        await offline_context(context, seen)
        page = await context.new_page()
        page.on("pageerror", lambda error: seen.errors.append(str(error)))
        response = await page.goto(docs_server + path)
        assert response is not None
        assert response.status == 200, path
        missing = await wait_for_nothing_missing(page, PAGES[path], wanted)
        screenshot = ROOT / "test-artifacts" / f"docs{path.replace('/', '-')}.png"
        screenshot.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(screenshot))
    finally:
        await context.close()
    assert missing == [], f"{path} does not show {missing}"
    assert seen.blocked == [], f"{path} asked another host for {seen.blocked}"
    allowed = {f"img-src {REDOC_LOGO}"} if path in ("/docs/api", "/redoc") else set()
    assert set(seen.refused) <= allowed, f"{path}: the CSP refused {seen.refused}"
    assert seen.errors == [], f"{path}: {seen.errors}"
