"""Arm ``phase3``: self-improving continued pretraining, K-way full-pairwise online DPO (docs/method.md §2).

    accelerate launch recipes/phase3_online_dpo.py [--config my.yaml] [--FLAG VALUE ...]
    # CPU demo on the embedded default (offline likelihood judge, a few small steps):
    accelerate launch --config_file recipes/accelerate/cpu_single.yaml recipes/phase3_online_dpo.py \\
        --judge likelihood --max_steps 2 --num_rollouts 4 --max_new_tokens 16 --prefixes_per_step 2

Top to bottom: parse config (``configs/phase3_online_dpo.yaml`` is always the base; ``--config``
layers on it; flags win) → split 16 prefixes per optimizer step over the launch → prefix/suffix rows →
model in fp32 (plus an explicit frozen reference under DeepSpeed ZeRO-3) →
SelfImprovingOnlineDPOTrainer (judge from the config: an OpenAI-compatible judge server, or the offline
likelihood judge) → train, resuming from the last checkpoint → ``<output_dir>/final`` (the next stage's
input, ``export_dtype``) → ``metrics.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate import PartialState
from datasets import Dataset
from transformers import AutoTokenizer
from transformers.integrations import is_deepspeed_zero3_enabled

from trl_ext.data.chunking import PREFIX_SUFFIX_SCHEMA
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
from trl_ext.trainers.online_dpo import SelfImprovingOnlineDPOConfig, SelfImprovingOnlineDPOTrainer

CONFIGS = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIGS / "phase3_online_dpo.yaml"
# One optimizer step = prefixes_per_step prefixes (each with its pool of 1 + K candidates), on any world size.
BATCH = BatchSpec(step_field="prefixes_per_step", unit="prefixes")


@dataclass
class Phase3Arguments(RecipeArguments):
    """Recipe fields; the trainer's own fields come from ``SelfImprovingOnlineDPOConfig``."""

    arm: str = field(default="phase3", metadata={"help": "Arm name (goes into metrics.json)."})
    model_name_or_path: str = field(
        default="embedded",
        metadata={
            "help": "Start checkpoint: a model dir, a Hub id (Qwen/Qwen3-0.6B-Base), or 'embedded' (tiny)."
        },
    )
    train_rows: str = field(
        default="outputs/data/examples.jsonl",
        metadata={"help": "Prefix/suffix rows (python -m trl_ext.data.prepare --out outputs/data)."},
    )
    split: str = field(default="train", metadata={"help": "Use rows of this split ('val' is held out)."})
    max_train_rows: int | None = field(
        default=None, metadata={"help": "Use only the first N rows of the split."}
    )
    prefixes_per_step: int | None = field(
        default=16,
        metadata={
            "help": "Prefixes per optimizer step over all processes; sets per_device_train_batch_size and "
            "gradient_accumulation_steps from the world size. null: use the two batch fields as given."
        },
    )
    explicit_ref_model: bool | None = field(
        default=None,
        metadata={
            "help": "Load the frozen reference as a second model. None: exactly when DeepSpeed ZeRO-3 "
            "needs it (a copy of a partitioned model is not a reference)."
        },
    )


def load_rows(script: Phase3Arguments) -> Dataset:
    try:
        rows = read_rows(script.train_rows, PREFIX_SUFFIX_SCHEMA).rows
    except FileNotFoundError:
        raise SystemExit(
            f"error: --train_rows {script.train_rows}: no such file (build it with "
            "python -m trl_ext.data.prepare --out outputs/data)"
        ) from None
    except RowFileError as err:
        raise SystemExit(f"error: {err}") from None
    rows = [r for r in rows if r["split"] == script.split][: script.max_train_rows]
    if not rows:
        raise SystemExit(f"error: --train_rows {script.train_rows}: no rows with split={script.split!r}")
    return Dataset.from_list([{k: r[k] for k in ("id", "prefix_ids", "suffix_ids")} for r in rows])


def main(argv: list[str] | None = None, default_config: Path = DEFAULT_CONFIG) -> dict:
    # ---- config: arm YAML ← --config files ← flags; the batch split follows the world size
    (script, args), plan = parse_layered(
        (Phase3Arguments, SelfImprovingOnlineDPOConfig),
        default_config,
        argv,
        description=__doc__,
        batch=BATCH,
    )
    check_export_dtype(script.export_dtype)

    # ---- data and model (fp32 weights; --bf16 true is autocast compute)
    train_dataset = load_rows(script)
    model_path = resolve_model(script.model_name_or_path, CONFIGS)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = load_model(model_path)
    explicit_ref = (
        is_deepspeed_zero3_enabled() if script.explicit_ref_model is None else script.explicit_ref_model
    )
    ref_model = load_model(model_path) if explicit_ref else None
    base_eos = (model.config.eos_token_id, model.generation_config.eos_token_id)
    if args.judge == "likelihood" and not args.judge_scorer_model:
        args.judge_scorer_model = model_path  # the offline judge scores with the frozen starting checkpoint

    # ---- trainer (builds the judge from the judge_* fields; writes metrics.json itself)
    trainer = SelfImprovingOnlineDPOTrainer(
        model=model,
        ref_model=ref_model,
        reward_funcs=None,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
    )
    final_dir = Path(args.output_dir) / "final"
    if trainer.metrics_callback is not None:
        world = PartialState().num_processes
        trainer.metrics_callback.extra.update(
            {
                "arm": script.arm,
                "checkpoint": str(final_dir),
                "start_model": model_path,
                "train_rows": len(train_dataset),
                "judge": args.judge,
                "judge_model": args.judge_model if args.judge == "llm" else None,
                "world_size": world,
                "prefixes_per_step": args.per_device_train_batch_size
                * args.gradient_accumulation_steps
                * world,
                "batch": plan.as_dict() if plan else None,
                "reference_model": "explicit copy" if explicit_ref else "trainer's frozen copy",
                "precision": precision_record(args, script.export_dtype),
                "script_args": asdict(script),
            }
        )

    # ---- train, resuming from the last checkpoint; then final/ (model + tokenizer, the next stage's input)
    train(trainer, args.output_dir, script.resume)
    export_final(trainer, final_dir, export_dtype=script.export_dtype, tokenizer=tokenizer, base_eos=base_eos)
    if trainer.is_world_process_zero():
        metrics_path = Path(args.output_dir) / "metrics.json"
        return json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return {}


if __name__ == "__main__":
    main()
