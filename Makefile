# The two commands of the README. Both install what they need into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit integration e2e bench clean schemas browser alertmanager

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The approval page is tested in a real browser: Debian's chromium, driven by
# playwright (which must not download its own). Best effort: installed when we
# are root with apt-get; without it that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test of the approval page will be skipped"; }

# The ingest benchmark sends the same load to Prometheus Alertmanager when it is on
# PATH. Best effort, as for the browser: Debian's package when we are root with
# apt-get; without it the benchmarks run and say the side-by-side was skipped.
alertmanager:
	@command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager >/dev/null) \
	  || echo "prometheus-alertmanager not installed: the ingest benchmark will skip the side-by-side"; }

## run: install, then start broker + every service + demo world + approval page
run: $(STAMP)
	$(BIN)/irctl up

## test: install, then lint, type-check and run every test
test: $(STAMP) browser lint typecheck
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m unit

integration: $(STAMP)
	$(BIN)/python -m pytest -q -m integration

e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m e2e

bench: $(STAMP) alertmanager
	$(BIN)/python -m bench.run_all

schemas: $(STAMP)
	$(BIN)/irctl schemas --out docs/schemas

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache
