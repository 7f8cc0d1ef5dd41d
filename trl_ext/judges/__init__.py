"""Judges: pointwise ``(prefix, candidate, reference) → score | invalid`` (this package) and the
pairwise judge (``trl_ext.judges.pairwise``). Shared pieces live in :mod:`trl_ext.judges.base`
(verdicts, invalid accounting, templates, strict parsing) and :mod:`trl_ext.judges.llm`
(OpenAI-compatible transport, async fan-out)."""

from trl_ext.judges.base import (
    JudgeStats,
    JudgeVerdict,
    PointwiseJudge,
    PointwiseRewardFunc,
    PromptTemplate,
    load_prompt_template,
    parse_json_field,
)
from trl_ext.judges.llm import LLMJudge, batch_generate, run_sync
from trl_ext.judges.offline import ReferenceOverlapJudge

__all__ = [
    "JudgeStats",
    "JudgeVerdict",
    "LLMJudge",
    "PointwiseJudge",
    "PointwiseRewardFunc",
    "PromptTemplate",
    "ReferenceOverlapJudge",
    "batch_generate",
    "load_prompt_template",
    "parse_json_field",
    "run_sync",
]
