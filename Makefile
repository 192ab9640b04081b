# Redundancy Explorer. `make run` starts the app, `make test` runs the tests; both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: help run test test-all lint typecheck bench evidence browser-deps load clean
CIFAR ?= ../shared/data/cifar10-jpg
SEEDS ?= 5
CURVE_SEEDS ?= 3

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install requirements (only when requirements.txt changed)

run: $(STAMP)  ## start the app on the embedded default dataset (digits), on localhost
	$(BIN)/streamlit run app.py --server.port $(PORT)

browser-deps:  ## Debian's chromium for the real-browser tests (skipped there if it cannot be installed)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium could not be installed: browser tests will skip"

lint: $(STAMP)
	$(BIN)/ruff check core ui views app.py tests bench

typecheck: $(STAMP)
	$(BIN)/mypy core

test: $(STAMP) browser-deps  ## lint, type-check core, check the layers, and run the default test suite (CPU, offline)
	$(BIN)/ruff check core ui views app.py tests bench
	$(BIN)/mypy core
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-all: $(STAMP) browser-deps  ## also the slow tests (CIFAR-10 end to end, kill/resume at scale)
	$(BIN)/python -m pytest -q -m "slow or not slow"

load: $(STAMP)  ## the load test: 1M-hash search and 5 concurrent app sessions
	$(BIN)/python -m pytest -q -s -m load tests/test_load.py

BENCH := .venv-bench
$(BENCH)/.installed: $(STAMP) bench/requirements.txt
	test -x $(BENCH)/bin/python || $(PY) -m venv $(BENCH)
	echo "$(CURDIR)/$(VENV)/lib/python3.11/site-packages" > $(BENCH)/lib/python3.11/site-packages/_redex_app.pth
	$(BENCH)/bin/pip install -q -r bench/requirements.txt
	touch $(BENCH)/.installed

bench: $(BENCH)/.installed  ## benchmarks against baselines (imagehash, imagededup, scikit-learn), to docs/BENCHMARKS.md
	$(BENCH)/bin/python -m bench.run

evidence: $(STAMP)  ## the paired CIFAR-10 sweep and its budget curve, converged recipe, equal steps (~3.5 h on 2 CPU cores, under nice; resumes), into docs/RESULTS.md
	nice -n 10 $(BIN)/python -m core evidence --dataset imagefolder:$(CIFAR) --seeds $(SEEDS) --curve-seeds $(CURVE_SEEDS) \
		--write docs/RESULTS.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
