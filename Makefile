# The front door. `make demo` and `make test` are the two commands a newcomer needs; both create
# the virtual environment and fetch the embedded default (no Hugging Face Hub) when missing.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
ARM ?= base
OUT ?= outputs
ACCELERATE := $(VENV)/bin/accelerate launch --config_file recipes/accelerate/cpu_single.yaml

export TRL_EXT_CACHE ?= $(CURDIR)/.cache/trl_ext
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TRL_EXPERIMENTAL_SILENCE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup assets demo test test-fast lint format eval bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# torch first, pinned: this machine has a local CPU build; unpinned torch pulls CUDA wheels.
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e '.[dev,serve,deepspeed]'
	touch $@

setup: $(VENV)/.installed

assets: setup
	$(PYTHON) -m trl_ext.assets fetch

demo: assets
	$(PYTHON) -m trl_ext.data.prepare --out $(OUT)/data

test: assets
	$(PYTHON) -m pytest -q -ra

test-fast: assets
	$(PYTHON) -m pytest -q -ra -m "not slow"

eval: assets
	$(PYTHON) -m eval suite --arm $(ARM) --outputs $(OUT) --out $(OUT)/eval $(EVAL_ARGS)

bench: assets
	$(PYTHON) bench/bench_graders.py
	$(PYTHON) bench/bench_client.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
