# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install serve test lint test-embedded test-servers

$(BIN)/idp: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(BIN)/idp

install: $(BIN)/idp

serve: install
	$(BIN)/idp serve

# pysaml2, one of the SP stacks the tests use, verifies signatures with the xmlsec1 program.
.PHONY: xmlsec1
xmlsec1:
	@command -v xmlsec1 >/dev/null || (apt-get install -y -q xmlsec1 >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null && apt-get install -y -q xmlsec1 >/dev/null)) || \
	  { echo "install the xmlsec1 program (Debian: apt-get install xmlsec1)"; exit 1; }

# The upstream sign-in tests (tests/test_upstream_oidc.py) run a real OpenID Provider, the npm
# package oidc-provider, on node: installed from tests/oidc_op's lock file, never globally.
OIDC_OP := tests/oidc_op
.PHONY: oidc-op
oidc-op: $(OIDC_OP)/node_modules/.package-lock.json

$(OIDC_OP)/node_modules/.package-lock.json: $(OIDC_OP)/package.json $(OIDC_OP)/package-lock.json
	@command -v npm >/dev/null || { echo "install Node.js 20 or later with npm (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix $(OIDC_OP) --no-audit --no-fund --loglevel=error
	@touch $@

# The browser tests (tests/test_mfa_browser.py) drive Debian's chromium through Playwright:
# Playwright's own browser download needs the internet, the distribution's package does not.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || (apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) || \
	  { echo "install the chromium browser (Debian: apt-get install chromium)"; exit 1; }

lint: install
	$(BIN)/ruff check idp tests bench
	$(BIN)/mypy idp

test-embedded: install xmlsec1 chromium oidc-op
	$(BIN)/pytest -q

# Again on PostgreSQL and a Redis server, when both answer on this machine.
test-servers: install xmlsec1 chromium oidc-op
	@if $(BIN)/python -c "import psycopg,redis; psycopg.connect('$(PG_URL)', connect_timeout=2).close(); redis.Redis.from_url('$(REDIS_URL)', socket_timeout=2).ping()" 2>/dev/null; then \
	  IDP_TEST_DATABASE_URL=$(PG_URL) IDP_TEST_REDIS_URL=$(REDIS_URL) $(BIN)/pytest -q; \
	else echo "PostgreSQL or Redis does not answer: skipped the run against them"; fi

test: lint test-embedded test-servers
