"""The documentation pages that carry their document inline: ReDoc's and AsyncAPI's.

Each loads its renderer from /docs/assets/ (backend/docs/vendor), never from another host.
"""

from __future__ import annotations

import json

from backend.docs.bundle import bundled_asyncapi, load_openapi

ASSETS_PATH = "/docs/assets/"

EVENTS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Roundtable events (AsyncAPI)</title>
  <link rel="icon" href="{favicon}">
  <link rel="stylesheet" href="{css}">
</head>
<body>
  <div id="asyncapi"></div>
  <script src="{js}"></script>
  <script id="document" type="application/json">{document}</script>
  <script>
    const schema = JSON.parse(document.getElementById("document").textContent);
    AsyncApiStandalone.render(
      {{ schema, config: {{ show: {{ sidebar: true }} }} }},
      document.getElementById("asyncapi"),
    );
  </script>
</body>
</html>
"""


API_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Roundtable API</title>
  <link rel="icon" href="{favicon}">
  <style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
  <div id="redoc"></div>
  <script src="{js}"></script>
  <script id="document" type="application/json">{document}</script>
  <script>
    const spec = JSON.parse(document.getElementById("document").textContent);
    Redoc.init(spec, {{ hideDownloadButton: false }}, document.getElementById("redoc"));
  </script>
</body>
</html>
"""


def asset(name: str) -> str:
    """Return the URL a page loads the renderer file `name` from."""
    return ASSETS_PATH + name


def _inline(document: object) -> str:
    # '</' must not end the script element early.
    return json.dumps(document, indent=1).replace("</", "<\\/")


def api_page() -> str:
    """Return the API reference page (ReDoc), the OpenAPI document inline."""
    return API_PAGE.format(
        document=_inline(load_openapi()), js=asset("redoc.standalone.js"), favicon=asset("favicon.png")
    )


def events_page() -> str:
    """Return the events page (AsyncAPI's React component), the AsyncAPI document inline."""
    return EVENTS_PAGE.format(
        document=_inline(bundled_asyncapi()),
        css=asset("asyncapi.css"),
        js=asset("asyncapi.js"),
        favicon=asset("favicon.png"),
    )
