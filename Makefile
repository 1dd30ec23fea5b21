# tts-bench developer targets. PY is the virtual environment's python.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(abspath ../shared/datasets)

.PHONY: install run test test-slow lint bench check

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

install:  ## the package, the embedded CPU engine (portable llama.cpp build, smoke-tested), torch + transformers (hf extra) and the dev tools
	VENV=$(VENV) bash scripts/install.sh

run:  ## the embedded default: SmolLM2-135M on generated arithmetic, on CPU
	$(VENV)/bin/tts-bench run

test:  ## the test command CI runs (slow tier excluded)
	TTS_BENCH_DATA_DIR=$${TTS_BENCH_DATA_DIR:-$(DATA)} $(PY) -m pytest -q

test-slow:  ## the slow tier (vLLM on CPU; needs scripts/setup_vllm_cpu.sh)
	TTS_BENCH_DATA_DIR=$${TTS_BENCH_DATA_DIR:-$(DATA)} $(PY) -m pytest -q -m slow

check:  ## the regression gate: the embedded default against its committed baseline (exit 1: regressed)
	$(VENV)/bin/tts-bench run --no-progress
	$(VENV)/bin/tts-bench check "$$(ls -td results/runs/arith__smollm2-135m__parallel-n8__* | head -1)" \
	  --baseline baselines/embedded-default.json --metric pass@k:1 --metric maj@k:8 \
	  --markdown results/check/summary.md --junit results/check/junit.xml

lint:
	$(VENV)/bin/ruff check tts_bench tests scripts

bench:  ## benchmarks: printed figures, not tests
	$(PY) scripts/bench_metrics.py
	$(PY) scripts/bench_grading.py
	$(PY) scripts/bench_overhead.py
	$(PY) scripts/bench_store.py
	$(PY) scripts/bench_budget_grid.py
