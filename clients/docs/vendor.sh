#!/usr/bin/env bash
# Copy the pinned renderers from node_modules (after `npm ci` here) into DEST, with their
# licences: what the server serves under /docs/assets/. `make docs` writes backend/docs/vendor
# (committed, so serving needs no Node and no network); `make docs-check` writes a temporary
# directory and compares. The copies are verbatim: the drift check is a byte comparison.
set -euo pipefail
dest=${1:?usage: vendor.sh DEST}
modules="$(cd "$(dirname "$0")" && pwd)/node_modules"
swagger=$modules/swagger-ui-dist
redoc=$modules/redoc
asyncapi=$modules/@asyncapi/react-component
mkdir -p "$dest"

cp "$swagger/swagger-ui-bundle.js" "$swagger/swagger-ui.css" "$swagger/swagger-ui-bundle.js.LICENSE.txt" "$dest/"
cp "$swagger/favicon-32x32.png" "$dest/favicon.png"
cp "$swagger/LICENSE" "$dest/swagger-ui.LICENSE"
cp "$swagger/NOTICE" "$dest/swagger-ui.NOTICE"

cp "$redoc/bundles/redoc.standalone.js" "$redoc/bundles/redoc.standalone.js.LICENSE.txt" "$dest/"
cp "$redoc/LICENSE" "$dest/redoc.LICENSE"

cp "$asyncapi/browser/standalone/index.js" "$dest/asyncapi.js"
cp "$asyncapi/browser/standalone/index.js.LICENSE.txt" "$dest/asyncapi.js.LICENSE.txt"
cp "$asyncapi/styles/default.min.css" "$dest/asyncapi.css"
cp "$asyncapi/LICENSE" "$dest/asyncapi.LICENSE"

versions() {
  node -p "const p = require('$1/package.json'); p.name + ' ' + p.version"
}
cat >"$dest/README.md" <<README
# Documentation renderers (generated: do not edit)

Copied verbatim by \`make docs\` from the npm packages pinned in clients/docs:

- $(versions "$swagger"): /docs (Swagger UI)
- $(versions "$redoc"): /docs/api and /redoc (ReDoc)
- $(versions "$asyncapi"): /docs/events (AsyncAPI)

Committed so that serving needs neither Node nor the network; \`make check\` fails when they
differ from a fresh copy. Each package's licence is beside its files.
README
