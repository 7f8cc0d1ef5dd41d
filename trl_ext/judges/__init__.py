"""Judges: pointwise ``(prefix, candidate, reference) → score | invalid`` (this package) and the
pairwise judge (``trl_ext.judges.pairwise``). Shared pieces live in :mod:`trl_ext.judges.base`
(verdicts, invalid accounting, templates, strict parsing), :mod:`trl_ext.judges.llm`
(OpenAI-compatible transport, field clipping, async fan-out) and :mod:`trl_ext.judges.stats`
(``JudgeStatsCallback``: judge counters saved with checkpoints). See docs/judges.md."""

from typing import Any

from trl_ext.judges.base import (
    JudgeStats,
    JudgeVerdict,
    PointwiseJudge,
    PointwiseRewardFunc,
    PromptTemplate,
    answer_text,
    load_prompt_template,
    parse_json_field,
)
from trl_ext.judges.llm import CLIP_SIDES, LLMJudge, TemplatedLLMJudge, batch_generate, run_sync
from trl_ext.judges.offline import ReferenceOverlapJudge


def __getattr__(name: str) -> Any:
    # The callback imports transformers; judges alone do not need it.
    if name == "JudgeStatsCallback":
        from trl_ext.judges.stats import JudgeStatsCallback

        return JudgeStatsCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLIP_SIDES",
    "JudgeStats",
    "JudgeStatsCallback",
    "JudgeVerdict",
    "LLMJudge",
    "PointwiseJudge",
    "PointwiseRewardFunc",
    "PromptTemplate",
    "ReferenceOverlapJudge",
    "TemplatedLLMJudge",
    "answer_text",
    "batch_generate",
    "load_prompt_template",
    "parse_json_field",
    "run_sync",
]
