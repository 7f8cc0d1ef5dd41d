"""trl_ext: turn pretraining text into training environments for TRL.

Public names are imported lazily so that ``import trl_ext`` stays cheap (no torch/TRL import)
for the data tools and the eval client.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "two_stage_generate": "trl_ext.rollout",
    "Rollout": "trl_ext.rollout",
    "LLMJudge": "trl_ext.judges",
    "ReferenceOverlapJudge": "trl_ext.judges",
    "PairwiseJudge": "trl_ext.judges.pairwise",
    "LLMPairwiseJudge": "trl_ext.judges.pairwise",
    "LikelihoodPairwiseJudge": "trl_ext.judges.pairwise",
    "JudgeStatsCallback": "trl_ext.judges.stats",
    "ThinkingGRPOConfig": "trl_ext.trainers.grpo",
    "ThinkingGRPOTrainer": "trl_ext.trainers.grpo",
    "SelfImprovingOnlineDPOConfig": "trl_ext.trainers.online_dpo",
    "SelfImprovingOnlineDPOTrainer": "trl_ext.trainers.online_dpo",
    "OpenAICompatibleClient": "trl_ext.client",
    "NonFiniteGuard": "trl_ext.training_guards",
    "NonFiniteTrainingError": "trl_ext.training_guards",
    "TrainingStoppedError": "trl_ext.training_guards",
    "embedded_default": "trl_ext.assets",
    "embedded_model_dir": "trl_ext.assets",
    "model_asset_info": "trl_ext.assets",
    "ThinkingSFTMetricsCallback": "trl_ext.sft_metrics",
    "SFTMetricsConfig": "trl_ext.sft_metrics",
    "match_token_budget": "trl_ext.sft_budget",
    "parse_thinking": "trl_ext.data.markup",
    "normalise_tags": "trl_ext.data.markup",
    "strip_thoughts": "trl_ext.data.markup",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trl_ext' has no attribute {name!r}")
