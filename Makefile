# The two commands a newcomer needs: `make demo` and `make test`.
# Both bootstrap .venv on first use; `make test` is also what CI runs (.ci/run).
# `make check` is the edit-test loop: lint, types and the fast tier (no broker, no model).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The fast tier: tests needing no Mosquitto, no pulled model, no ../shared/realworld, and not
# marked slow (tests/conftest.py applies the first three markers from the fixtures a test uses).
FAST   := not broker and not model and not realworld and not slow
# Coverage of edge_app and simulator in `make test` (branches too; [tool.coverage] in
# pyproject.toml); the run fails below this floor, a few points under the figure in
# docs/testing.md.
COVERAGE_FLOOR ?= 90

.PHONY: demo test check lint typecheck suite venv mosquitto chromium model bench clean

demo: venv mosquitto model
	$(BIN)/edge-app demo

test: lint suite

check: lint
	$(BIN)/pytest -q -m "$(FAST)"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Every tier (the markers select tiers, not the folders), with coverage.
suite: venv mosquitto chromium model
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Mosquitto is the broker of the tests and the demo; install it where we may (root + apt).
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mosquitto (apt-get)"; \
		apt-get install -y -qq mosquitto >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq mosquitto; }; \
	else \
		echo "mosquitto is missing: install it with 'sudo apt-get install -y mosquitto'" >&2; exit 1; \
	fi

# Headless Chromium drives the status page's browser tests (tests/ui); same rule as mosquitto.
chromium:
	@if test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (apt-get)"; \
		apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }; \
	else \
		echo "chromium is missing: install it with 'sudo apt-get install -y chromium chromium-driver'" >&2; exit 1; \
	fi

model: venv
	$(BIN)/edge-app models pull

bench: venv model
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
