# defimon: every target installs what it needs, then runs.
#   make demo    devnet + simulator + flow + API + page on http://127.0.0.1:8000/
#   make test    lint, types and the whole test suite (real anvil, chDB, Chromium)
#   make test-fast  lint, types and the unit tests (no anvil, no browser): seconds, while you work
#   make bench   the benchmarks; one JSON object per line

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: demo test test-fast bench lint deps browser clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12), "defimon needs Python 3.11 or 3.12 (Bytewax 0.21.1 has no wheels for newer)"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

devnet/node_modules/.installed: devnet/package.json devnet/package-lock.json
	cd devnet && npm ci --no-audit --no-fund --loglevel=error
	@test -x devnet/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
	@touch $@

deps: $(BIN)/.installed devnet/node_modules/.installed

# Debian's Chromium drives the page test; a test tool's own browser download is not used.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the page test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

demo: deps
	$(BIN)/defimon demo --port $(PORT)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

test: deps browser lint
	$(BIN)/pytest

test-fast: lint
	$(BIN)/pytest tests/unit -q

bench: deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) devnet/node_modules .defimon .defimon-demo
