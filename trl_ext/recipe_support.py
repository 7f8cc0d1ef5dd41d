"""What every arm recipe does the same way: layered configs, the model to start from, the batch split
over the launch, fp32 training weights, resume, non-finite stops and the exported ``final/``.

Each recipe under ``recipes/`` stays a top-to-bottom script of its own arm; the steps that are not
arm-specific live here so they are written (and tested) once:

* :func:`parse_layered`: the arm's YAML is always the base, each ``--config FILE`` layers on it,
  command-line flags win (TRL's ``TrlParser`` would *replace* the arm's YAML with the user's).
* :func:`apply_batch_plan`: the method's global batch (a field of the arm's YAML) split over the
  world size before the trainer config is built (see :mod:`trl_ext.batch_plan`).
* :func:`resolve_model` / :func:`load_model`: ``embedded`` names, clear errors for missing local
  checkpoints, and fp32 weights always (``--bf16 true`` is autocast compute, never bf16 weights).
* :func:`train` and :func:`export_final`: resume from the last checkpoint, stop with a clear message
  on a non-finite update, and write ``final/`` in ``export_dtype`` with a README saying so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from trl_ext.batch_plan import BatchPlan, BatchPlanError, plan_batch

EXPORT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

LAYERS_HELP = (
    "Configuration layers, lowest to highest: the dataclass defaults; the arm's YAML ({arm_config}), "
    "always read; each --config FILE in the order given (its keys replace the arm's keys, top-level "
    "keys only); then the command-line flags, which win. So a two-line user YAML changes two fields "
    "and keeps the arm's output_dir, start model and arm name."
)


@dataclass
class RecipeArguments:
    """Fields every arm recipe has (the arm's own fields extend this)."""

    arm: str = field(default="", metadata={"help": "Arm name (goes into metrics.json)."})
    resume: bool = field(
        default=True, metadata={"help": "Resume from the last checkpoint in output_dir if any."}
    )
    max_per_device_train_batch_size: int = field(
        default=4,
        metadata={
            "help": "Memory cap for the derived per-device micro batch: the step's per-process share is "
            "split into the largest micro batch ≤ this times gradient accumulation."
        },
    )
    export_dtype: str = field(
        default="float32",
        metadata={
            "help": f"dtype of the weights written to <output_dir>/final, one of {tuple(EXPORT_DTYPES)}. "
            "Training weights and checkpoints are fp32 either way; bfloat16 halves a serving copy "
            "(the next stage then starts from bf16-rounded weights)."
        },
    )


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BatchSpec:
    """Which field fixes the global batch: ``step_field`` × the value of ``multiplier_field`` units."""

    step_field: str
    unit: str
    multiplier_field: str | None = None


class ConfigError(SystemExit):
    """A config file or flag is wrong; the message names the file and the field."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a YAML mapping of field: value, got {type(data).__name__}")
    return data


def _flag_names(argv: Sequence[str]) -> set[str]:
    """Field names given on the command line (``--name value`` or ``--name=value``)."""
    return {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}


def parse_layered(
    types: Sequence[type],
    arm_config: str | Path,
    argv: Sequence[str] | None = None,
    *,
    description: str | None = None,
    batch: BatchSpec | None = None,
) -> tuple[tuple[Any, ...], BatchPlan | None]:
    """Parse ``types`` (dataclasses) from the arm YAML, then each ``--config`` file, then flags.

    With ``batch``, the per-device batch and accumulation are set from the step size and the world
    size (:func:`apply_batch_plan`) before the dataclasses are built, so their ``__post_init__``
    checks see the final values. Returns the dataclass instances and the batch plan.
    """
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    arm_config = Path(arm_config)
    parser = TrlParser(
        tuple(types),
        allow_abbrev=False,
        description=description,
        epilog=LAYERS_HELP.format(arm_config=arm_config),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        help="A YAML file layered on the arm's YAML (repeatable).",
    )
    cpu = not torch.cuda.is_available()
    parser.set_defaults(bf16=not cpu, use_cpu=cpu)  # TRL defaults bf16 to True, which fails on CPU

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", action="append", default=[])
    known, rest = pre.parse_known_args(argv)
    user_files = [Path(p) for p in known.config if Path(p).resolve() != arm_config.resolve()]

    fields = {action.dest for action in parser._actions}
    merged: dict[str, Any] = {}
    explicit: set[str] = set()
    for path in [arm_config, *user_files]:
        layer = _read_yaml(path)
        env = layer.pop("env", {}) or {}
        if not isinstance(env, dict):
            raise ConfigError(f"{path}: 'env' must be a mapping of variable: value")
        os.environ.update({str(k): str(v) for k, v in env.items()})
        unknown = sorted(set(layer) - fields)
        if unknown:
            raise ConfigError(f"{path}: unknown field(s) {unknown} (see --help for the fields)")
        merged.update(layer)
        if path is not arm_config:
            explicit.update(layer)
    parser.set_defaults(**merged)
    namespace = parser.parse_args(rest)
    explicit |= _flag_names(rest) & fields
    values = vars(namespace)
    plan = None
    if batch is not None:
        multiplier = int(values[batch.multiplier_field]) if batch.multiplier_field else 1
        plan = apply_batch_plan(
            values, explicit, step_field=batch.step_field, unit=batch.unit, multiplier=multiplier
        )
    out = []
    for dtype in types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        try:
            out.append(dtype(**{k: v for k, v in values.items() if k in names}))
        except ValueError as err:
            raise ConfigError(str(err)) from None
    return tuple(out), plan


# ----------------------------------------------------------------------------------------------- batch


def world_size() -> int:
    """Processes in this launch (``accelerate launch`` / ``torchrun`` set WORLD_SIZE on every one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def apply_batch_plan(
    values: dict[str, Any],
    explicit: set[str],
    *,
    step_field: str,
    unit: str,
    multiplier: int = 1,
) -> BatchPlan | None:
    """Set ``per_device_train_batch_size`` / ``gradient_accumulation_steps`` in ``values`` so one optimizer
    step is ``values[step_field] × multiplier`` units on this world size. ``step_field: null`` keeps the
    batch fields as given (returns None). When a user spells out both batch fields and not the step,
    the step becomes what they spell out (``values[step_field]`` is updated)."""
    if values.get(step_field) is None:
        return None
    try:
        plan = plan_batch(
            step_value=int(values[step_field]),
            world_size=world_size(),
            max_per_device=int(values["max_per_device_train_batch_size"]),
            unit=unit,
            step_flag=f"--{step_field}",
            multiplier=multiplier,
            per_device=values["per_device_train_batch_size"]
            if "per_device_train_batch_size" in explicit
            else None,
            grad_accum=values["gradient_accumulation_steps"]
            if "gradient_accumulation_steps" in explicit
            else None,
            step_explicit=step_field in explicit,
        )
    except BatchPlanError as err:
        raise ConfigError(str(err)) from None
    if plan.source == "explicit":
        step, rest = divmod(plan.units_per_step, multiplier)
        if rest:
            raise ConfigError(
                f"--per_device_train_batch_size {plan.per_device_train_batch_size} × "
                f"--gradient_accumulation_steps {plan.gradient_accumulation_steps} × {plan.world_size} "
                f"processes = {plan.units_per_step} {unit}, not a multiple of {multiplier}"
            )
        values[step_field] = step
    values["per_device_train_batch_size"] = plan.per_device_train_batch_size
    values["gradient_accumulation_steps"] = plan.gradient_accumulation_steps
    if int(os.environ.get("RANK", "0")) == 0:
        how = "as given" if plan.source == "explicit" else "derived"
        print(
            f"[batch] {values[step_field]} {step_field.removesuffix('_per_step')} per optimizer step = "
            f"{plan.world_size} process(es) × {plan.per_device_train_batch_size} × "
            f"{plan.gradient_accumulation_steps} accumulation ({plan.units_per_step} {unit}, {how})"
        )
    return plan


# ----------------------------------------------------------------------------------------------- model


def _producer_hint(path: Path, configs_dir: Path | None) -> str:
    """Which arm writes ``path`` (``<output_dir>/final`` of one of the arm YAMLs), as a hint."""
    if configs_dir is None or path.name != "final":
        return ""
    for config in sorted(configs_dir.glob("*.yaml")):
        try:
            out = yaml.safe_load(config.read_text()).get("output_dir")
        except (yaml.YAMLError, AttributeError):
            continue
        if out and Path(out) == path.parent:
            return f" (run recipes/{config.stem}.py first, or pass --model_name_or_path embedded)"
    return " (pass a model directory, a Hub id, or embedded)"


def resolve_model(name: str | None, configs_dir: Path | None = None) -> str:
    """``embedded`` → the tiny embedded model; ``embedded:<name>`` → that embedded demo model; a local
    path must hold a model (config.json); anything else is passed on as a Hub id."""
    if not name:
        raise ConfigError("--model_name_or_path is required (a model dir, a Hub id, or 'embedded')")
    from trl_ext.assets import AssetError, embedded_model_dir, embedded_model_name

    embedded = embedded_model_name(name)
    if embedded is not None:
        try:
            return str(embedded_model_dir(embedded))
        except AssetError as err:
            raise ConfigError(f"--model_name_or_path {name}: {err}") from None
    path = Path(name)
    looks_local = path.is_absolute() or name.startswith((".", "outputs")) or path.exists()
    if looks_local and not (path / "config.json").exists():
        hint = _producer_hint(path, configs_dir)
        raise ConfigError(f"--model_name_or_path {path}: no model directory (config.json) there{hint}")
    return name


def load_model(path: str):
    """The model in fp32, always: optimizer updates need fp32 weights (at lr 1e-7 a bf16 weight does
    not move). ``--bf16 true`` makes the Trainer compute under bf16 autocast (DeepSpeed: bf16 compute
    with fp32 master weights)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def precision_record(args, export_dtype: str) -> dict:
    """What metrics.json says about precision."""
    deepspeed = bool(getattr(args, "deepspeed", None)) or os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true"
    if args.bf16:
        compute = "bf16 (DeepSpeed, fp32 master weights)" if deepspeed else "bf16 autocast"
    else:
        compute = "fp32"
    return {"weights": "float32", "compute": compute, "export_dtype": export_dtype}


def check_export_dtype(export_dtype: str) -> None:
    if export_dtype not in EXPORT_DTYPES:
        raise ConfigError(f"--export_dtype must be one of {tuple(EXPORT_DTYPES)}, got {export_dtype!r}")


# ------------------------------------------------------------------------------------------ train/save


def last_checkpoint(output_dir: str, resume: bool) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if resume and os.path.isdir(output_dir) else None


def train(trainer, output_dir: str, resume: bool) -> None:
    """Train, resuming from the last checkpoint; a safety stop (non-finite values, a judge that stays
    unavailable) exits non-zero with its message, so the caller never reaches :func:`export_final`."""
    from trl_ext.training_guards import TrainingStoppedError

    try:
        trainer.train(resume_from_checkpoint=last_checkpoint(output_dir, resume))
    except TrainingStoppedError as err:
        raise SystemExit(f"error: training stopped: {err}") from None


def _full_state_dict(trainer) -> dict[str, torch.Tensor] | None:
    """The trained weights in fp32 on the main process (None elsewhere); collective under DeepSpeed,
    whose module holds bf16 copies while the optimizer holds the fp32 master weights."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not trainer.is_deepspeed_enabled:
        return model.state_dict() if trainer.is_world_process_zero() else None
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param

    stage3 = trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    for param in model.parameters():
        full = safe_get_full_fp32_param(param) if param.requires_grad else None
        if full is None:  # frozen, or an engine without hp mapping (fp32 training)
            with deepspeed.zero.GatheredParameters([param], enabled=stage3):
                full = param.detach().float().clone()
        if trainer.is_world_process_zero():
            out[names[id(param)]] = full.detach().cpu().float()
    if not trainer.is_world_process_zero():
        return None
    persistent = set(model.state_dict())
    out.update({n: b.detach().cpu() for n, b in model.named_buffers() if n in persistent and n not in out})
    return out


def export_final(
    trainer,
    final_dir: str | Path,
    *,
    export_dtype: str,
    tokenizer,
    base_eos: tuple,
    note: str = "",
) -> None:
    """Write ``final/``: the weights in ``export_dtype``, the tokenizer, the checkpoint's own EOS (the
    HF Trainer aligns the model's EOS with the tokenizer's at init; a base model ends documents with
    its own), and a README saying how it was trained and what dtype the weights are."""
    final_dir = Path(final_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # LoRA: the merged model is what later stages load
        model = model.merge_and_unload()
    model.config.eos_token_id, model.generation_config.eos_token_id = base_eos
    state = _full_state_dict(trainer) if model is trainer.accelerator.unwrap_model(trainer.model) else None
    if trainer.is_world_process_zero():
        if state is None:
            state = model.state_dict()
        dtype = EXPORT_DTYPES[export_dtype]
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
        model.save_pretrained(final_dir, state_dict=state)
        # save_pretrained records the in-memory (fp32) dtype; the file holds export_dtype.
        config_path = final_dir / "config.json"
        config_path.write_text(
            json.dumps({**json.loads(config_path.read_text()), "dtype": export_dtype}, indent=2)
        )
        tokenizer.save_pretrained(final_dir)
        compute = "bf16 autocast (DeepSpeed: bf16 with fp32 master weights)" if trainer.args.bf16 else "fp32"
        (final_dir / "README.md").write_text(
            f"# {final_dir.parent.name}/final\n\n"
            f"Weights: **{export_dtype}** (`export_dtype`). Trained with fp32 weights and optimizer state, "
            f"compute: {compute}. Checkpoints under `{final_dir.parent.name}/checkpoint-N` hold the fp32 "
            "training state (DeepSpeed: the fp32 master weights are in `global_stepN/`).\n"
            + (f"\n{note}\n" if note else "")
        )
    trainer.accelerator.wait_for_everyone()
