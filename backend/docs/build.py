"""`make docs`: write the static documentation pages under backend/docs/site/.

Each page carries its document inline and loads its renderer from /docs/assets/ (copied
by `make docs` from the pinned npm packages): the API reference rendered by ReDoc, the
events by AsyncAPI's React component. No request to any other host.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from backend.docs.bundle import bundled_asyncapi, load_openapi

SITE = Path(__file__).resolve().parent / "site"

EVENTS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Roundtable events (AsyncAPI)</title>
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
  <style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
  <div id="redoc"></div>
  <script src="/docs/assets/redoc.standalone.js"></script>
  <script id="document" type="application/json">{document}</script>
  <script>
    const spec = JSON.parse(document.getElementById("document").textContent);
    Redoc.init(spec, {{ hideDownloadButton: false }}, document.getElementById("redoc"));
  </script>
</body>
</html>
"""


def _inline(document: object) -> str:
    # '</' must not end the script element early.
    return json.dumps(document, indent=1).replace("</", "<\\/")


def api_page() -> str:
    """Return the static API reference page."""
    return API_PAGE.format(document=_inline(load_openapi()))


def events_page(css: str = "/docs/assets/asyncapi.css", js: str = "/docs/assets/asyncapi.js") -> str:
    """Return the events page, loading AsyncAPI's renderer from `js`/`css` (served here by default)."""
    return EVENTS_PAGE.format(document=_inline(bundled_asyncapi()), css=css, js=js)


def main() -> int:
    """Write the events page next to the API page."""
    SITE.mkdir(parents=True, exist_ok=True)
    for name, page in (("api.html", api_page()), ("events.html", events_page())):
        (SITE / name).write_text(page, encoding="utf-8")
        print(f"wrote {SITE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
