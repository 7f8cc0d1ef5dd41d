"""Arm name → the HF model directory that gets served.

Recipes save each arm's final model to ``outputs/<arm>/final`` (``save_pretrained`` model +
tokenizer). ``base`` is the starting model: the embedded tiny Qwen3 on CPU, or whatever
``--base-model`` names: a directory, a Hub id (``Qwen/Qwen3-0.6B-Base`` for real runs), or an
embedded model as the recipes name it (``embedded`` = tiny, ``embedded:smollm2``). A PEFT adapter directory is
merged into its base model once and exported to ``outputs/<arm>/export`` so every server can
load it as a plain model directory.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

ARMS = ("base", "phase3", "raw_base", "think_base", "think_phase3", "think_base_rlmt", "think_phase3_rlmt")
ARM_TITLES = {  # the names used in the reference run's tables (docs/reference_results.md)
    "base": "Base",
    "phase3": "Phase3",
    "raw_base": "Base+Raw",
    "think_base": "Base+Think",
    "think_phase3": "Phase3+Think",
    "think_base_rlmt": "Base+Think+RLMT",
    "think_phase3_rlmt": "Phase3+Think+RLMT",
}
# (right, left) pairs reported as "right vs left", in the reference run's order, plus the stage checks.
DEFAULT_COMPARISONS = (
    ("think_base_rlmt", "think_base"),
    ("think_phase3_rlmt", "think_phase3"),
    ("think_phase3_rlmt", "think_base_rlmt"),
    ("think_phase3", "think_base"),
    ("phase3", "base"),
    ("think_base", "raw_base"),
)
RECIPE_FOR_ARM = {
    "phase3": "recipes/phase3_online_dpo.py",
    "raw_base": "recipes/sft_raw_base.py",
    "think_base": "recipes/sft_think_base.py",
    "think_phase3": "recipes/sft_think_phase3.py",
    "think_base_rlmt": "recipes/rlmt_think_base.py",
    "think_phase3_rlmt": "recipes/rlmt_think_phase3.py",
}


class ArmError(FileNotFoundError):
    """The arm has no servable checkpoint; the message says which recipe produces it."""


def arm_title(arm: str) -> str:
    return ARM_TITLES.get(arm, arm)


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def _latest_checkpoint(arm_dir: Path) -> Path | None:
    checkpoints = [p for p in arm_dir.glob("checkpoint-*") if p.is_dir() and _is_model_dir(p)]
    if not checkpoints:
        return None
    return max(checkpoints, key=lambda p: int(re.sub(r"\D", "", p.name) or 0))


def checkpoint_dir(arm: str, outputs: str | Path = "outputs", base_model: str | Path | None = None) -> Path:
    """The directory to serve for ``arm`` (a merged export for PEFT adapters)."""
    if arm == "base":
        from trl_ext.assets import embedded_model_dir, embedded_model_name

        embedded = embedded_model_name(base_model or "embedded")
        return embedded_model_dir(embedded) if embedded is not None else Path(base_model)
    arm_dir = Path(outputs) / arm
    final = arm_dir / "final"
    if _is_model_dir(final):
        chosen = final
    else:
        chosen = _latest_checkpoint(arm_dir)
        if chosen is None:
            recipe = RECIPE_FOR_ARM.get(arm, f"recipes/<{arm}>.py")
            raise ArmError(
                f"no model for arm {arm!r}: {final} has no config.json and {arm_dir} has no checkpoint-*/. "
                f"Train it first: accelerate launch {recipe}   (known arms: {', '.join(ARMS)})"
            )
        logger.warning("%s has no final model; serving the latest checkpoint %s", arm_dir, chosen)
    if (chosen / "adapter_config.json").is_file() and not (chosen / "config.json").is_file():
        return export_merged_adapter(chosen, arm_dir / "export")
    return chosen


def export_merged_adapter(adapter_dir: Path, export_dir: Path) -> Path:
    """Merge a PEFT adapter into its base model and save a plain HF model dir (once)."""
    if (export_dir / "config.json").is_file():
        return export_dir
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir).merge_and_unload()
    model.save_pretrained(export_dir)
    tokenizer_source = (
        adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else model.name_or_path
    )
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(export_dir)
    return export_dir
