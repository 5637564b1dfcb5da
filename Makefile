# portmeta: every target creates .venv on first use and installs what it needs into it.
# torch==2.13.0 goes in first (a CPU wheel on this machine's disk); an unpinned torch would
# pull a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.portmeta-installed
CORE_VENV ?= .venv-core
CORE_PY := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.portmeta-installed
OUT ?= portmeta-out
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-core-without-torch test-all lint format bench lines graphviz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[fx,torchao,test]'
	touch $(STAMP)

$(CORE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_PY) -m pip install -q --upgrade pip
	$(CORE_PY) -m pip install -q -e '.[test]'
	touch $(CORE_STAMP)

install: $(STAMP)

# Graphviz `dot` renders the demo's and `portmeta draw`'s pictures.
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq graphviz) >/dev/null; \
	  else echo "note: Graphviz 'dot' not found; install it to render SVG/PNG" >&2; fi; }

demo: $(STAMP) graphviz
	$(VENV)/bin/portmeta demo --out $(OUT)

# All tests: the torch-free core suite in an environment without torch, then everything
# (core, fx parity, CLI, doctests) in the full environment.
test: test-core-without-torch test-all

test-core-without-torch: $(CORE_STAMP)
	$(CORE_PY) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
	  || { echo "$(CORE_VENV) must not contain torch" >&2; exit 1; }
	$(CORE_PY) -m pytest -q -n $(PYTEST_WORKERS) -p no:cacheprovider tests/core src/portmeta

test-all: $(STAMP) graphviz
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests src adapters

lint: $(STAMP)
	$(VENV)/bin/ruff check src adapters tests bench
	$(VENV)/bin/ruff format --check src adapters tests bench
	$(VENV)/bin/mypy --strict src/

format: $(STAMP)
	$(VENV)/bin/ruff format src adapters tests bench
	$(VENV)/bin/ruff check --fix src adapters tests bench

bench: $(STAMP)
	$(PY) bench/run.py

# Code lines (not blank, comments or docstrings) of the library, as docs/performance.md counts them.
lines:
	$(PYTHON) bench/lines.py src adapters

clean:
	rm -rf $(VENV) $(CORE_VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache .hypothesis
