"""Arm ``phase3``: self-improving continued pretraining with K-way full-pairwise online DPO (METHOD.md §2).

    accelerate launch recipes/phase3_online_dpo.py [--config recipes/configs/phase3_online_dpo.yaml] [--FLAG V
    ...]
    # CPU demo on the embedded default (offline likelihood judge, a few small steps):
    accelerate launch --config_file recipes/accelerate/cpu_single.yaml recipes/phase3_online_dpo.py \\
        --judge likelihood --max_steps 2 --num_rollouts 4 --max_new_tokens 16 \\
        --per_device_train_batch_size 1 --gradient_accumulation_steps 2

Top to bottom: parse config → load prefix/suffix rows → load model → SelfImprovingOnlineDPOTrainer (judge from
the config: an OpenAI-compatible judge server, or the offline likelihood judge) → train, resuming from the
last
checkpoint → save ``<output_dir>/final`` (model + tokenizer, the next stage's input) → ``metrics.json``.
Every number is a config field; any ``SelfImprovingOnlineDPOConfig`` / ``TrainingArguments`` flag works.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.trainer_utils import get_last_checkpoint
from trl import TrlParser

from trl_ext.data.chunking import PREFIX_SUFFIX_SCHEMA
from trl_ext.data.rows import RowFileError, read_rows
from trl_ext.trainers.online_dpo import SelfImprovingOnlineDPOConfig, SelfImprovingOnlineDPOTrainer

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "phase3_online_dpo.yaml"


@dataclass
class Phase3Arguments:
    """Recipe fields; the trainer's own fields come from ``SelfImprovingOnlineDPOConfig``."""

    arm: str = field(default="phase3", metadata={"help": "Arm name (goes into metrics.json)."})
    model_name_or_path: str = field(
        default="embedded",
        metadata={
            "help": "Start checkpoint: a model dir or Hub id (Qwen/Qwen3-0.6B-Base), or 'embedded' (tiny)."
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
    resume: bool = field(
        default=True, metadata={"help": "Resume from the last checkpoint in output_dir if any."}
    )
    explicit_ref_model: bool = field(
        default=False,
        metadata={"help": "Load the frozen reference as a second model (needed under DeepSpeed ZeRO-3)."},
    )


def resolve_model_path(name: str) -> str:
    if name == "embedded":
        from trl_ext.assets import embedded_default

        return str(embedded_default().model_dir)
    path = Path(name)
    if (path.is_absolute() or name.startswith((".", "outputs"))) and not (path / "config.json").exists():
        raise SystemExit(f"error: --model_name_or_path {path}: no model directory (config.json) there")
    return name


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


def main(argv: list[str] | None = None) -> dict:
    # ---- config
    parser = TrlParser((Phase3Arguments, SelfImprovingOnlineDPOConfig), allow_abbrev=False)
    cpu = not torch.cuda.is_available()
    parser.set_defaults(bf16=not cpu, use_cpu=cpu)  # TRL defaults bf16 to True, which fails on CPU
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        argv = ["--config", str(DEFAULT_CONFIG), *argv]
    script, args = parser.parse_args_and_config(args=argv)

    # ---- data and model
    train_dataset = load_rows(script)
    model_path = resolve_model_path(script.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    ref_model = (
        AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype) if script.explicit_ref_model else None
    )
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
                "prefixes_per_step": args.per_device_train_batch_size
                * args.gradient_accumulation_steps
                * world,
                "script_args": asdict(script),
            }
        )

    # ---- train, resuming from the last checkpoint
    last = get_last_checkpoint(args.output_dir) if script.resume and os.path.isdir(args.output_dir) else None
    trainer.train(resume_from_checkpoint=last)
    # The HF Trainer aligns the model's EOS with the tokenizer's (<|im_end|> for Qwen3); the base model ends
    # documents with <|endoftext|>, and later stages sample from this checkpoint.
    model.config.eos_token_id, model.generation_config.eos_token_id = base_eos

    # ---- save the HF model dir the next stage / the server loads
    trainer.save_model(str(final_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final_dir))
        metrics_path = Path(args.output_dir) / "metrics.json"
        return json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return {}


if __name__ == "__main__":
    main()
