"""Arm ``think_base_rlmt``: RLMT (docs/method.md §4) starting from the ``think_base`` SFT checkpoint.

    accelerate launch recipes/rlmt_think_base.py [--config my.yaml] [--FLAG VALUE ...]
    # CPU demo on the embedded default (offline overlap judge, tiny budgets):
    accelerate launch --config_file recipes/accelerate/cpu_single.yaml recipes/rlmt_think_base.py \\
        --model_name_or_path embedded --judge offline --max_steps 2 --num_generations 4 \\
        --per_device_train_batch_size 8 --think_max_tokens 8 --suffix_max_tokens 16

Top to bottom: parse config (``configs/rlmt_think_base.yaml`` is always the base; ``--config`` layers
on it; flags win) → split 2 prefixes × 16 samples per optimizer step over the launch → RL rows (built
from the RL partition of the augmented rows when the RL-row file is missing) → judge (an
OpenAI-compatible judge server, or the offline overlap judge) → ThinkingGRPOTrainer on fp32 weights →
train, resuming from the last checkpoint → ``<output_dir>/final`` (``export_dtype``) →
``metrics.json`` with the RLMT results-table columns. ``--use_peft true --lora_r 16`` (TRL's
``ModelConfig``) trains a LoRA adapter instead; ``final/`` is then the merged model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate import PartialState
from datasets import Dataset
from transformers import AutoTokenizer
from trl import ModelConfig, get_peft_config

from trl_ext.data.rl_rows import RL_ROW_SCHEMA, RLRowConfig, build_rl_rows_file
from trl_ext.data.rows import RowFileError, read_rows
from trl_ext.judges import LLMJudge, ReferenceOverlapJudge
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
from trl_ext.trainers.grpo import ThinkingGRPOConfig, ThinkingGRPOTrainer

CONFIGS = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIGS / "rlmt_think_base.yaml"


@dataclass
class RLMTArguments(RecipeArguments):
    """Recipe fields; the trainer's own fields come from ``ThinkingGRPOConfig``, the start checkpoint
    (``model_name_or_path``: the SFT arm's final dir, a Hub id, or ``embedded``) and LoRA flags from
    TRL's ``ModelConfig``."""

    arm: str = field(default="think_base_rlmt", metadata={"help": "Arm name (goes into metrics.json)."})
    rl_rows: str = field(
        default="outputs/data/rl/rl_rows.jsonl",
        metadata={"help": "RL rows (prompt, prefix, reference); built from thinking_rows when missing."},
    )
    thinking_rows: str = field(
        default="outputs/data/thinking/rl.jsonl",
        metadata={"help": "Augmented rows of the RL partition (python -m trl_ext.data.augment)."},
    )
    min_before_tokens: int = field(
        default=128, metadata={"help": "RL rows: tokens needed before the thought."}
    )
    min_after_tokens: int = field(
        default=64, metadata={"help": "RL rows: raw tokens needed after the thought."}
    )
    reference_tokens: int = field(default=128, metadata={"help": "RL rows: reference continuation length."})
    max_train_rows: int | None = field(default=None, metadata={"help": "Use only the first N RL rows."})
    judge: str = field(
        default="llm",
        metadata={
            "help": "'llm': an OpenAI-compatible judge server (judge_base_urls); 'offline': word overlap."
        },
    )
    judge_base_urls: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:30000"],
        metadata={"help": "Judge endpoints (SGLang: --served-model-name default), spread round-robin."},
    )
    judge_model: str = field(default="default", metadata={"help": "Served judge model name."})
    judge_prompt: str = field(
        default="rlmt_reference_match", metadata={"help": "Packaged judge template name or a template file."}
    )
    judge_max_concurrency: int = field(default=32, metadata={"help": "Judge requests in flight."})
    judge_timeout_s: float = field(default=60.0, metadata={"help": "Per-request judge timeout."})
    judge_max_retries: int = field(default=2, metadata={"help": "Retries per judge request (with backoff)."})
    judge_temperature: float = field(default=0.7, metadata={"help": "Judge sampling temperature."})
    judge_top_p: float = field(default=0.6, metadata={"help": "Judge top_p."})
    judge_disable_thinking: bool = field(
        default=True,
        metadata={
            "help": "Send chat_template_kwargs.enable_thinking=false (Qwen3-style judges answer directly)."
        },
    )
    offline_threshold: float = field(
        default=0.1,
        metadata={"help": "Offline judge: word-overlap F1 with the reference needed for reward 1."},
    )


def load_rl_rows(script: RLMTArguments, tokenizer) -> list[dict]:
    """The RL rows; built (and written by the main process) from the RL partition when missing."""
    path = Path(script.rl_rows)
    if not path.exists():
        if not Path(script.thinking_rows).exists():
            raise SystemExit(
                f"error: --rl_rows {path} does not exist and neither does --thinking_rows "
                f"{script.thinking_rows} to build it from (python -m trl_ext.data.augment, see docs/sft.md)"
            )
        config = RLRowConfig(script.min_before_tokens, script.min_after_tokens, script.reference_tokens)
        state = PartialState()
        with state.main_process_first():
            if state.is_main_process:
                report = build_rl_rows_file(script.thinking_rows, path, tokenizer, config)
                print(
                    f"[rl rows] {report.rows_out}/{report.rows_in} rows → {path}; "
                    f"rejected {dict(report.rejected)}"
                )
    try:
        rows = read_rows(path, RL_ROW_SCHEMA).rows
    except RowFileError as err:
        raise SystemExit(f"error: {err}") from None
    return rows[: script.max_train_rows] if script.max_train_rows else rows


def build_judge(script: RLMTArguments, output_dir: str):
    if script.judge == "offline":
        return ReferenceOverlapJudge(threshold=script.offline_threshold)
    if script.judge != "llm":
        raise SystemExit(f"error: --judge must be 'llm' or 'offline', got {script.judge!r}")
    extra = {"chat_template_kwargs": {"enable_thinking": False}} if script.judge_disable_thinking else None
    rank = PartialState().process_index
    return LLMJudge(
        script.judge_base_urls,
        prompt=script.judge_prompt,
        model=script.judge_model,
        temperature=script.judge_temperature,
        top_p=script.judge_top_p,
        max_concurrency=script.judge_max_concurrency,
        timeout_s=script.judge_timeout_s,
        max_retries=script.judge_max_retries,
        request_extra=extra,
        invalid_log_path=Path(output_dir) / f"judge_invalid.rank{rank}.jsonl",
    )


# One optimizer step = prefixes_per_step groups of num_generations samples, whatever the world size
# (ThinkingGRPOConfig derives gradient_accumulation_steps from the per-device batch set from this).
BATCH = BatchSpec(step_field="prefixes_per_step", unit="samples", multiplier_field="num_generations")


def main(default_config: Path = DEFAULT_CONFIG, argv: list[str] | None = None) -> dict:
    # ---- config: arm YAML ← --config files ← flags; the batch split follows the world size
    (script, args, model_args), plan = parse_layered(
        (RLMTArguments, ThinkingGRPOConfig, ModelConfig),
        default_config,
        argv,
        description=__doc__,
        batch=BATCH,
    )
    check_export_dtype(script.export_dtype)

    # ---- model (fp32 weights) and the tokenizer saved with the SFT checkpoint
    model_path = resolve_model(model_args.model_name_or_path, CONFIGS)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = load_model(model_path)
    base_eos = (model.config.eos_token_id, model.generation_config.eos_token_id)

    # ---- data and judge
    rows = load_rl_rows(script, tokenizer)
    columns = ("id", "prompt", "prefix", "reference")  # no teacher_thought: reward funcs see every column
    dataset = Dataset.from_list([{k: r[k] for k in columns if k in r} for r in rows])
    judge = build_judge(script, args.output_dir)

    # ---- trainer (GRPO builds the frozen fp32 reference model itself when beta > 0, ZeRO-3 included)
    trainer = ThinkingGRPOTrainer(
        model=model,
        reward_funcs=[judge],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    final_dir = Path(args.output_dir) / "final"
    if trainer.metrics_json is not None:
        trainer.metrics_json.extra.update(
            arm=script.arm,
            final_checkpoint=str(final_dir),
            start_model=model_path,
            rl_rows=len(rows),
            judge=script.judge if script.judge == "offline" else f"llm:{script.judge_model}",
            samples_per_step=args.generation_batch_size,
            prefixes_per_step=args.generation_batch_size // args.num_generations,
            world_size=PartialState().num_processes,
            batch=plan.as_dict() if plan else None,
            precision=precision_record(args, script.export_dtype),
            script_args=asdict(script),
        )

    # ---- train, resuming from the last checkpoint; then final/ (model + tokenizer)
    train(trainer, args.output_dir, script.resume)
    export_final(trainer, final_dir, export_dtype=script.export_dtype, tokenizer=tokenizer, base_eos=base_eos)
    if trainer.is_world_process_zero():
        metrics_path = Path(args.output_dir) / "metrics.json"
        return json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return {}


if __name__ == "__main__":
    main()
