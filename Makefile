# The front door. `make run` serves, `make test` tests; both install what they need first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv manages Python and every dependency (pinned in uv.lock). Bring it along when missing.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

GENERATED := backend/contract clients/python/roundtable/contract clients/python/roundtable_client

.PHONY: help install run test test-fast check generate lint types specs migrations-check generated-check bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

install: $(UV) ## Install the pinned dependencies into .venv
	$(UV) sync --frozen

# Serving needs only the project's dependencies: `uv run --no-dev` installs those and leaves
# any development tools already in .venv alone (an inexact sync); `make test` adds the rest.
run: $(UV) ## Migrate and serve on http://$HOST:$PORT (embedded PostgreSQL unless DATABASE_URL, stopped with the server)
	$(RUN) --no-dev python -m backend serve

test: install $(if $(shell command -v npm 2>/dev/null),ts-install) ## Run every test (PostgreSQL from TEST_DATABASE_URL/DATABASE_URL, else embedded)
	$(RUN) pytest

test-fast: install ## Run the quick tests (no server processes, browsers, npm or fault injection)
	$(RUN) pytest -m "not slow"

generate: install ts-generate ## Regenerate backend/contract and clients/python (and clients/typescript) from the specs
	$(RUN) datamodel-codegen --all-jobs

check: install specs spec-lint generated-check ts-check web-check docs-check lint types migrations-check ## Everything CI checks besides tests

specs: ## Validate openapi/openapi.yaml and asyncapi/asyncapi.yaml
	$(RUN) python -m tests.tools.validate_specs

# Spec lint: Redocly CLI and Spectral pinned exactly in tests/tools/lint, with the committed
# rulesets beside them (redocly.yaml, .spectral.yaml). No install script is needed, and one
# of Spectral's only reports usage.
LINT := tests/tools/lint
.PHONY: lint-install spec-lint spectral-lint

$(LINT)/node_modules: $(LINT)/package.json $(LINT)/package-lock.json
	cd $(LINT) && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

lint-install: $(LINT)/node_modules ## Install the pinned spec linter (npm ci), when needed

# Redocly boxes a Node.js 20 end-of-life notice into every run; it says nothing about the specs.
spec-lint: lint-install ## Lint both specs with Redocly (tests/tools/lint/redocly.yaml), then Spectral; any problem fails
	@set -o pipefail; REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_NOTIFICATIONS=true \
	  $(LINT)/node_modules/.bin/redocly lint --config $(LINT)/redocly.yaml 2>&1 | sed '/╔═/,/╚═/d' | cat -s
	@$(MAKE) --no-print-directory spectral-lint

spectral-lint: lint-install ## Spectral's OpenAPI, AsyncAPI and OWASP rulesets (tests/tools/lint/.spectral.yaml); any finding, even a hint, fails
	$(LINT)/node_modules/.bin/spectral lint --ruleset $(LINT)/.spectral.yaml --fail-severity hint \
	  --display-only-failures openapi/openapi.yaml asyncapi/asyncapi.yaml

nickname-pattern: install ## Write openapi.yaml's Nickname pattern from the server's nickname rule (Unicode data)
	$(RUN) python -m tests.tools.nickname_pattern --write

generated-check: ## Fail when generated code differs from what the specs produce now
	$(RUN) python -m tests.tools.check_generated

lint: ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

types: ## mypy, strict on hand-written code
	$(RUN) mypy

# In a scratch database of its own (TEST_DATABASE_NAME + "_migrations", else a fresh name), dropped after.
migrations-check: ## Fail unless migrations and models agree
	DATABASE_URL="$${TEST_DATABASE_URL:-$$DATABASE_URL}" $(RUN) python -m backend check-migrations

bench: install ## Load the server from another process; print latency, throughput and memory per stream (ONLY=chat|games: those rows)
	$(RUN) python -m tests.bench.run $(if $(ONLY),--only $(ONLY))

# The contract diff (tests/tools/specdiff): openapi/ and asyncapi/ at BASE against the working
# tree. BASE defaults to the merge base with main, or on main to the previous commit.
# REPORT_ONLY=1 prints without failing (CI).
.PHONY: spec-diff release-notes
SPEC_DIFF := $(RUN) python -m tests.tools.specdiff $(if $(BASE),--base $(BASE))

spec-diff: $(UV) ## Classified contract changes since BASE=ref; fails on a breaking one unless its spec's major rose
	@$(SPEC_DIFF) $(if $(filter 1,$(REPORT_ONLY)),--report-only)

release-notes: $(UV) ## Draft CHANGELOG.md entries from the contract changes since BASE=ref
	@$(SPEC_DIFF) --release-notes

# The TypeScript client (clients/typescript): npm dependencies pinned exactly, locked in package-lock.json.
TS := clients/typescript
.PHONY: ts-install ts-generate ts-check ts-pack

$(TS)/node_modules: $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund
	@touch $@

ts-install: $(TS)/node_modules ## Install the TypeScript client's pinned npm dependencies (npm ci), when needed

ts-generate: ts-install ## Regenerate clients/typescript/src/generated from both specs
	cd $(TS) && npm run --silent generate

ts-check: ts-install ## Fail when the TypeScript client's generated types or version drift from the specs, or it does not compile
	cd $(TS) && npm run --silent check:generated && npm run --silent typecheck

ts-pack: ts-install ## Build the TypeScript client (dist/) and pack it: clients/typescript/roundtable-client-<version>.tgz
	cd $(TS) && npm pack --loglevel=warn

# The web page (clients/web): built with esbuild into backend/static, which is committed, so
# serving and testing the page needs no Node. `npm ci` copies clients/typescript in as a package.
WEB := clients/web
.PHONY: web web-install web-check

web-install: ## Install the page's pinned npm dependencies (npm ci), the TypeScript client's current source included
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error

web: web-install ## Type-check the web page and build it into backend/static (commit the result)
	cd $(WEB) && npm run --silent typecheck && npm run --silent build -- ../../backend/static

web-check: web-install ## Fail when the page does not compile or backend/static differs from a fresh build
	cd $(WEB) && npm run --silent typecheck
	@out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	(cd $(WEB) && npm run --silent build -- "$$out" >/dev/null) || exit 1; \
	if ! diff -r "$$out" backend/static >/dev/null; then \
	  diff -rq "$$out" backend/static; \
	  echo "backend/static differs from a fresh build of $(WEB): run 'make web' and commit backend/static"; exit 1; \
	fi; echo "backend/static is up to date"

# Documentation renderers (Swagger UI, ReDoc, AsyncAPI's React component), pinned in
# clients/docs and copied verbatim into backend/docs/vendor, which is committed: /docs,
# /docs/api, /redoc and /docs/events are served from it, with no Node and no network.
DOCS := clients/docs
VENDOR := backend/docs/vendor
.PHONY: docs docs-install docs-check

$(DOCS)/node_modules: $(DOCS)/package.json $(DOCS)/package-lock.json
	cd $(DOCS) && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

docs-install: $(DOCS)/node_modules ## Install the pinned documentation renderers (npm ci), when needed

docs: docs-install ## Copy the pinned renderers into backend/docs/vendor (commit the result)
	rm -rf $(VENDOR) && $(DOCS)/vendor.sh $(VENDOR)

docs-check: docs-install ## Fail when backend/docs/vendor differs from a fresh copy of the pinned renderers
	@out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	$(DOCS)/vendor.sh "$$out" || exit 1; \
	if ! diff -r "$$out" $(VENDOR) >/dev/null; then \
	  diff -rq "$$out" $(VENDOR); \
	  echo "$(VENDOR) differs from the renderers pinned in $(DOCS): run 'make docs' and commit $(VENDOR)"; exit 1; \
	fi; echo "$(VENDOR) is up to date"
