"""The thinking-SFT recipe shared by the three SFT arms (docs/method.md §3).

    accelerate launch recipes/sft_think_base.py   [--config my.yaml] [--FLAG VALUE ...]
    accelerate launch recipes/sft_think_phase3.py [--config my.yaml] [--FLAG VALUE ...]
    accelerate launch recipes/sft_raw_base.py     [--config my.yaml] [--FLAG VALUE ...]

Top to bottom: parse config (the arm's ``configs/sft_<arm>.yaml`` is always the base; ``--config``
layers on it; flags win) → split 16 sequences per optimizer step over the launch → load rows →
(raw_base) derive the step count that matches the think arms' token budget → model in fp32 →
SFTTrainer with the metrics callbacks and the non-finite guard → train (resuming from the last
checkpoint) → ``<output_dir>/final`` (``export_dtype``) → ``metrics.json`` with the SFT results-table
columns. Every number is a config field; any ``SFTConfig`` flag works on the command line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate import PartialState
from datasets import Dataset
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer

from trl_ext.callbacks import MetricsJsonCallback, ThroughputMemoryCallback, column_last, column_min
from trl_ext.data.augment import AUGMENTED_SCHEMA
from trl_ext.data.rows import RowFileError, read_rows
from trl_ext.recipe_support import (
    BatchSpec,
    RecipeArguments,
    check_export_dtype,
    export_final,
    load_model,
    parse_layered,
    precision_record,
    resolve_model,
    train,
)
from trl_ext.sft_budget import match_token_budget
from trl_ext.sft_metrics import SFTMetricsConfig, ThinkingSFTMetricsCallback
from trl_ext.training_guards import NonFiniteGuard

CONFIGS = Path(__file__).parent / "configs"
# One optimizer step = sequences_per_step sequences (no packing), on any world size.
BATCH = BatchSpec(step_field="sequences_per_step", unit="sequences")
ARMS = ("think_base", "think_phase3", "raw_base")
TARGET_FIELDS = ("interleaved_thinking_ids", "raw_chunk_ids")


@dataclass
class ThinkingSFTArguments(RecipeArguments):
    """Recipe fields; the trainer's own fields come from ``trl.SFTConfig``."""

    arm: str = field(
        default="think_base", metadata={"help": f"Arm name, one of {ARMS} (goes into metrics.json)."}
    )
    model_name_or_path: str = field(
        default="embedded",
        metadata={
            "help": "Start checkpoint: a model dir or Hub id (Qwen/Qwen3-0.6B-Base for real runs), "
            "'embedded' "
            "for the tiny embedded Qwen3; think_phase3 uses the phase3 arm's final dir."
        },
    )
    train_rows: str = field(
        default="outputs/data/thinking/sft.jsonl", metadata={"help": "Augmented rows of the SFT partition."}
    )
    val_rows: str = field(
        default="outputs/data/thinking/heldout.jsonl",
        metadata={"help": "Augmented rows of the held-out partition."},
    )
    target_field: str = field(
        default="interleaved_thinking_ids",
        metadata={
            "help": f"Training target: {TARGET_FIELDS[0]} (think arms) or {TARGET_FIELDS[1]} (raw_base)."
        },
    )
    match_token_budget_of: str | None = field(
        default=None,
        metadata={
            "help": "If set (raw_base: interleaved_thinking_ids), max_steps is derived so the tokens trained "
            "match an arm that trains on this field for budget_reference_steps steps."
        },
    )
    budget_reference_steps: int = field(
        default=-1,
        metadata={"help": "Steps of the reference (think) arm; -1 = one epoch over the train rows."},
    )
    max_train_rows: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    val_max_rows: int = field(default=512, metadata={"help": "Held-out rows scored at each evaluation."})
    eval_every_steps: int | None = field(
        default=None, metadata={"help": "Evaluate every N steps (start/end always)."}
    )
    eval_batch_size: int = field(
        default=2, metadata={"help": "Rows per forward pass in the metrics callback."}
    )
    generation_rows: int = field(
        default=32, metadata={"help": "Held-out prefixes sampled for repetition_4gram_rate."}
    )
    generation_prompt_tokens: int = field(
        default=128, metadata={"help": "Raw prefix tokens given to the sampler."}
    )
    generation_max_new_tokens: int = field(default=128, metadata={"help": "Tokens sampled per continuation."})
    sequences_per_step: int | None = field(
        default=16,
        metadata={
            "help": "Sequences per optimizer step over all processes; sets per_device_train_batch_size and "
            "gradient_accumulation_steps from the world size. null: use the two batch fields as given."
        },
    )


def load_rows(path: str, field_name: str, limit: int | None = None) -> list[dict]:
    try:
        rows = read_rows(path, AUGMENTED_SCHEMA).rows
    except RowFileError as err:
        raise SystemExit(f"error: {err} (build it with python -m trl_ext.data.augment)") from None
    return rows[:limit] if limit is not None else rows


def seed_table_summary() -> dict:
    """metrics.json columns of the reference SFT table (docs/reference_results.md), from the history."""

    def throughput(history: list[dict]) -> float:
        # training tokens per second of *training* time: the metric evaluations are excluded.
        tokens = column_last("tokens_seen")(history)
        runtime = column_last("train_runtime")(history)
        eval_s = sum(r.get("sft_eval_seconds", 0.0) for r in history)
        return tokens / max(runtime - eval_s, 1e-9)

    return {
        "primary_metric": column_last("val_loss"),
        "val_loss": column_last("val_loss"),
        "val_loss_raw": column_last("val_loss_raw"),
        "val_loss_selected": column_last("val_loss_selected"),
        "repetition_4gram_rate": column_last("repetition_4gram_rate"),
        "tokens_seen": column_last("tokens_seen"),
        "throughput_tok_s": throughput,
        "min_available_mem_gib": column_min("available_mem_gib"),
        "thought_nll": column_last("thought_nll"),
        "text_nll": column_last("text_nll"),
        "post_thought_16_nll": column_last("post_thought_16_nll"),
        "thought_nll_at_start": lambda h: [r["thought_nll"] for r in h if "thought_nll" in r][0],
        "generation_think_rate": column_last("generation_think_rate"),
    }


def main(default_config: str | None = None, argv: list[str] | None = None) -> dict:
    # ---- config: arm YAML ← --config files ← flags; the batch split follows the world size
    if default_config is None:
        raise SystemExit("error: run an arm's recipe (recipes/sft_think_base.py, ...), not sft_common.py")
    (script, args), plan = parse_layered(
        (ThinkingSFTArguments, SFTConfig), default_config, argv, description=__doc__, batch=BATCH
    )
    if script.arm not in ARMS:
        raise SystemExit(f"error: --arm must be one of {ARMS}, got {script.arm!r}")
    if script.target_field not in TARGET_FIELDS:
        raise SystemExit(f"error: --target_field must be one of {TARGET_FIELDS}, got {script.target_field!r}")
    check_export_dtype(script.export_dtype)
    # tokens_seen must count real tokens, not padding (HfArgumentParser cannot parse this str|bool flag).
    args.include_num_input_tokens_seen = "non_padding"
    world = PartialState().num_processes

    # ---- data: the arm's target ids; the held-out rows feed the metrics callback
    train_rows = load_rows(script.train_rows, script.target_field, script.max_train_rows)
    val_rows = load_rows(script.val_rows, script.target_field)
    cap = args.max_length or 10**9
    train_dataset = Dataset.from_list([{"input_ids": r[script.target_field][:cap]} for r in train_rows])

    # ---- raw_base: derive max_steps so its token budget matches the think arms
    budget = None
    if script.match_token_budget_of:
        budget = match_token_budget(
            reference_lengths=[min(len(r[script.match_token_budget_of]), cap) for r in train_rows],
            matched_lengths=[min(len(r[script.target_field]), cap) for r in train_rows],
            reference_steps=script.budget_reference_steps,
            per_device_batch=args.per_device_train_batch_size,
            grad_accum=args.gradient_accumulation_steps,
            world_size=world,
            reference_field=script.match_token_budget_of,
            matched_field=script.target_field,
        )
        args.max_steps = budget.matched_steps
        if PartialState().is_main_process:
            print(f"[{script.arm}] token budget: {json.dumps(budget.as_dict())}")

    # ---- model (fp32 weights; --bf16 true is autocast compute)
    model_path = resolve_model(script.model_name_or_path, CONFIGS)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = load_model(model_path)
    base_eos = (model.config.eos_token_id, model.generation_config.eos_token_id)

    # ---- trainer and callbacks (order matters: throughput annotates logs before metrics.json reads them)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer)
    metrics_config = SFTMetricsConfig(
        max_rows=script.val_max_rows,
        batch_size=script.eval_batch_size,
        generation_rows=script.generation_rows,
        generation_prompt_tokens=script.generation_prompt_tokens,
        generation_max_new_tokens=script.generation_max_new_tokens,
        seed=args.seed,
        eval_every_steps=script.eval_every_steps,
    )
    final_dir = Path(args.output_dir) / "final"
    trainer.add_callback(ThroughputMemoryCallback())
    trainer.add_callback(ThinkingSFTMetricsCallback(trainer, val_rows, script.target_field, metrics_config))
    extra = {
        "arm": script.arm,
        "checkpoint": str(final_dir),
        "start_model": model_path,
        "target_field": script.target_field,
        "train_rows": len(train_rows),
        "val_rows": min(len(val_rows), script.val_max_rows),
        "world_size": world,
        "sequences_per_step": args.per_device_train_batch_size * args.gradient_accumulation_steps * world,
        "batch": plan.as_dict() if plan else None,
        "precision": precision_record(args, script.export_dtype),
        "token_budget": budget.as_dict() if budget else None,
        "script_args": asdict(script),
    }
    metrics_json = None
    if trainer.is_world_process_zero():
        metrics_json = MetricsJsonCallback(args.output_dir, summary=seed_table_summary(), extra=extra)
        trainer.add_callback(metrics_json)
    # A non-finite loss / gradient norm skips that update, saves the last good weights and stops the run.
    NonFiniteGuard.install(trainer, metrics_json=metrics_json)

    # ---- train, resuming from the last checkpoint; then final/ (the next stage / the server loads it)
    train(trainer, args.output_dir, script.resume)
    export_final(trainer, final_dir, export_dtype=script.export_dtype, tokenizer=tokenizer, base_eos=base_eos)
    if trainer.is_world_process_zero():
        metrics_path = Path(args.output_dir) / "metrics.json"
        return json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return {}
