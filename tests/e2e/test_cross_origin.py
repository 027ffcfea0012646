"""A page on another origin, in Chromium: allowed by CORS_ORIGINS it calls the API and streams
with a ticket; from an origin not listed the browser refuses it. The server's own page keeps
working under its Content-Security-Policy and streams with tickets, never the token in a URL.

The other origins are a tiny static HTTP server (the front end's dev server, say) on ports of
their own. Headless Chromium is Debian's (/usr/bin/chromium); Playwright downloads nothing.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Request, async_playwright, expect

from tests.e2e.test_web_game import CHROMIUM, require_chromium
from tests.support import serve

# The front end: it creates a room (a JSON POST, so a preflight), takes a stream ticket and
# opens an EventSource with it; `run` resolves with what it saw, or rejects.
FRONT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>front</title></head><body>
<script>
async function run(api) {
  const created = await fetch(api + "/v1/rooms", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: "From afar", nickname: "Front", ruleset: "mafia" }),
  });
  const session = await created.json();
  const room = session.room.id;
  const issued = await fetch(`${api}/v1/rooms/${room}/stream-tickets`, {
    method: "POST",
    headers: { Authorization: `Bearer ${session.token}` },
  });
  const { ticket } = await issued.json();
  const snapshot = await new Promise((resolve, reject) => {
    const source = new EventSource(`${api}/v1/rooms/${room}/events?ticket=${encodeURIComponent(ticket)}`);
    source.addEventListener("snapshot", (event) => { source.close(); resolve(JSON.parse(event.data)); });
    source.onerror = () => { source.close(); reject(new Error("the stream failed")); };
  });
  return {
    status: created.status,
    location: created.headers.get("Location"),
    player: session.player.id,
    me: snapshot.data.me.id,
  };
}
</script></body></html>
"""


@contextmanager
def static_site(directory: Path) -> Iterator[int]:
    """Serve `directory` over HTTP on a free port; yield the port."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


async def new_page(browser: Browser, console: list[str]) -> Any:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(20_000)
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    return page


async def test_a_listed_origin_calls_the_api_and_streams_with_a_ticket_and_another_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    require_chromium()
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(FRONT_PAGE)
    with static_site(site) as listed_port, static_site(site) as stranger_port:
        listed, stranger = f"http://127.0.0.1:{listed_port}", f"http://127.0.0.1:{stranger_port}"
        with serve(database_url, tmp_path / "server.log", {"CORS_ORIGINS": listed}) as server:
            api = server.url
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
                try:
                    console: list[str] = []
                    page = await new_page(browser, console)
                    await page.goto(f"{listed}/index.html")
                    seen = await page.evaluate("(api) => run(api)", api)
                    assert seen["status"] == 201
                    assert seen["location"] == f"/v1/rooms/{seen['location'].rsplit('/', 1)[-1]}"  # exposed
                    assert seen["me"] == seen["player"]  # the snapshot is the caller's
                    assert not [line for line in console if "CORS" in line], console

                    refused_console: list[str] = []
                    other = await new_page(browser, refused_console)
                    await other.goto(f"{stranger}/index.html")
                    error = await other.evaluate(
                        "(api) => run(api).then(() => 'allowed', (e) => `${e.name}: ${e.message}`)", api
                    )
                    assert error.startswith("TypeError"), error  # "Failed to fetch"
                    assert any("blocked by CORS policy" in line for line in refused_console), refused_console
                finally:
                    await browser.close()
        log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in log, log
        # The refused page's POST never reached the server: its preflight was turned away.
        assert log.count('"POST /v1/rooms HTTP/1.1" 201') == 1, log


async def test_the_servers_own_page_works_under_its_csp_and_streams_with_tickets(
    database_url: str, tmp_path: Path
) -> None:
    require_chromium()
    with serve(database_url, tmp_path / "server.log") as server:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
            try:
                console: list[str] = []
                page = await new_page(browser, console)
                violations: list[str] = []
                await page.expose_function("reportViolation", lambda text: violations.append(text))
                await page.add_init_script(
                    "document.addEventListener('securitypolicyviolation',"
                    " (e) => window.reportViolation(e.violatedDirective + ' ' + e.blockedURI))"
                )
                streams: list[str] = []

                def on_request(request: Request) -> None:
                    if "/events" in request.url:
                        streams.append(request.url)

                page.on("request", on_request)
                response = await page.goto(server.url)
                assert response is not None
                assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
                await page.get_by_test_id("create-nickname").fill("Alice")
                await page.get_by_test_id("create-submit").click()
                await expect(page.get_by_test_id("room-code")).to_have_text(
                    re.compile(r"^[A-HJ-NP-Z2-9]{6}$")
                )
                await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
                # A reload resumes, with a new ticket.
                await page.reload()
                await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
                token = await page.evaluate("JSON.parse(localStorage.getItem('roundtable.session')).token")
            finally:
                await browser.close()
    assert violations == [], violations
    assert not [line for line in console if line.startswith(("error", "pageerror"))], console
    assert len(streams) == 2, streams
    assert all("ticket=" in url and "access_token" not in url and token not in url for url in streams), (
        streams
    )
    assert len({re.search(r"ticket=([^&]+)", url)[1] for url in streams}) == 2  # type: ignore[index]
