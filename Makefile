# The front door. `make demo` and `make test` are the two commands a newcomer needs; both create
# the virtual environment and fetch the embedded default (no Hugging Face Hub) when missing.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
ARM ?= base
# The recipes' YAML configs write under outputs/.
OUT := outputs
ACCELERATE := $(VENV)/bin/accelerate launch --config_file recipes/accelerate/cpu_single.yaml

export TRL_EXT_CACHE ?= $(CURDIR)/.cache/trl_ext
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TRL_EXPERIMENTAL_SILENCE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup assets demo demo-data demo-phase3 demo-sft demo-rlmt demo-eval test test-fast lint format eval bench clean

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

# ---------------------------------------------------------------------------------------------
# The demo: the whole lifecycle on the embedded default, on CPU, with tiny budgets and the offline
# judges (no judge server needed). Same recipes and CLIs as a real run; only the sizes differ.
# Real runs: see docs/recipes.md. Numbers from the demo are pipeline checks, not research results.
DEMO_PHASE3 := --judge likelihood --max_steps 2 --num_rollouts 4 --max_new_tokens 16 \
	--per_device_train_batch_size 1 --gradient_accumulation_steps 2 --logging_steps 1 --save_steps 1
DEMO_SFT := --max_steps 2 --per_device_train_batch_size 1 --gradient_accumulation_steps 2 --logging_steps 1 \
	--val_max_rows 4 --generation_rows 4 --generation_max_new_tokens 32 --save_strategy no
DEMO_RLMT := --judge offline --max_steps 2 --num_generations 4 --per_device_train_batch_size 8 \
	--think_max_tokens 8 --suffix_max_tokens 16 --save_steps 1
DEMO_GATE := --num-prefixes 8 --samples 4 --think-max-tokens 16 --suffix-max-tokens 32 --top-p 1.0
RLMT_ARMS := think_base think_base_rlmt think_phase3 think_phase3_rlmt

demo: demo-data demo-phase3 demo-sft demo-rlmt demo-eval
	@echo "demo finished: outputs in $(OUT)/, results page $(OUT)/results.md"

demo-data: assets
	$(PYTHON) -m trl_ext.data.prepare --out $(OUT)/data
	$(PYTHON) -m trl_ext.data.splits --input $(OUT)/data/examples.jsonl --out $(OUT)/data/thinking/splits
	for part in sft rl heldout; do \
	  $(PYTHON) -m trl_ext.data.augment --input $(OUT)/data/thinking/splits/$$part.jsonl \
	    --output $(OUT)/data/thinking/$$part.jsonl --teacher offline --progress false || exit 1; \
	done

demo-phase3: demo-data
	$(ACCELERATE) recipes/phase3_online_dpo.py $(DEMO_PHASE3)
	$(PYTHON) -m eval continuation --base base --candidate phase3 --num-prefixes 8 --max-new-tokens 32 \
	  --judge likelihood --judge-scorer base

demo-sft: demo-phase3
	$(ACCELERATE) recipes/sft_think_base.py $(DEMO_SFT)
	$(ACCELERATE) recipes/sft_raw_base.py $(DEMO_SFT) --budget_reference_steps 2
	$(ACCELERATE) recipes/sft_think_phase3.py $(DEMO_SFT)

demo-rlmt: demo-sft
	$(ACCELERATE) recipes/rlmt_think_base.py $(DEMO_RLMT)
	$(ACCELERATE) recipes/rlmt_think_phase3.py $(DEMO_RLMT)

demo-eval: demo-rlmt
	$(PYTHON) -m eval reward-gate --arms $(RLMT_ARMS) $(DEMO_GATE)
	$(PYTHON) -m eval thought-probe --arms $(RLMT_ARMS) --num-prefixes 4 --samples 2 --bank-size 4 \
	  --think-max-tokens 16 --suffix-max-tokens 32 --top-p 1.0
	for arm in think_base think_base_rlmt; do \
	  $(PYTHON) -m eval suite --arm $$arm --outputs $(OUT) --out $(OUT)/eval || exit 1; \
	done
	$(PYTHON) -m eval results-page --outputs $(OUT) --out $(OUT)/results.md

test: assets
	$(PYTHON) -m pytest -q -ra

test-fast: assets
	$(PYTHON) -m pytest -q -ra -m "not slow"

eval: assets
	$(PYTHON) -m eval suite --arm $(ARM) --outputs $(OUT) --out $(OUT)/eval $(EVAL_ARGS)

# Performance tables (ratios are measured within one run; absolute numbers depend on the machine).
bench: assets
	$(PYTHON) bench/bench_two_stage_rollout.py --k 4 --repeats 2  # CPU-sized; defaults are K=16
	$(PYTHON) bench/bench_logprobs.py --prefix-len 128
	$(PYTHON) bench/bench_judge_throughput.py --calls 64
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
