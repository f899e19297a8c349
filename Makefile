# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# The setup `make run` launches: a shipped config (src/integritee/local_setup/configs) or a path.
# Default: one dev node and two validateers sharing one shard (the second on-boards by MU-RA).
CONFIG ?= two-workers.json

.PHONY: run test lint install clean bench prometheus

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's Prometheus server for `make run` (skipped with a message where apt-get is unavailable).
prometheus:
	@if command -v prometheus >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Prometheus (apt-get install prometheus)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null \
			|| echo "could not install prometheus: make run goes on without it"; \
	else echo "prometheus is not installed and apt-get (as root) is not available: make run goes on without it"; fi

# The local setup with the narrated demo, Prometheus when installed; Ctrl-C stops everything.
run: $(STAMP) prometheus
	$(BIN)/integritee-local-setup $(CONFIG) --demo $$(command -v prometheus >/dev/null 2>&1 && echo --prometheus) $(ARGS)

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
