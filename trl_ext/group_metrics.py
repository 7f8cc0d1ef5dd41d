"""RLMT group statistics, artifact flags and stop alerts (docs/method.md §4) as pure functions.

A *group* is one prefix's K samples. Scores are 0/1 judge rewards, ``None`` for an invalid
verdict. The definitions follow the reference run exactly so its numbers can be compared:

* ``reward_mean`` / ``reward_std``: mean and population std over valid scores of all groups; NaN
  (a *missing* value, not 0) when no score is valid;
* ``invalid_judge_rate``: invalid samples / samples;
* ``mixed_group_rate``: groups whose valid scores have max > min;
* ``near_zero_group_rate``: groups with ≥2 valid scores and population std < 1e-5;
* ``all_zero_group_rate`` / ``all_one_group_rate``: groups with mean ≤ 0 / mean ≥ 1 (a group
  with no valid score counts in neither);
* ``avg_thought_words`` / ``avg_suffix_words``: ``\\S+`` counts; ``avg_total_new_tokens``: mean
  sampled thought + suffix tokens (inserted boundary tokens excluded);
* ``artifact_rate``: share of samples whose thought + suffix is flagged by :func:`artifact_flags`;
* ``length_drift``: ``avg_total_new_tokens`` relative to the first step's, minus 1.

The same functions serve the reward gate (eval) so training and evaluation count alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

NEAR_ZERO_STD = 1e-5
REFUSAL_PHRASES = ("as an ai", "i cannot", "i'm unable")
_REPEAT_RE = re.compile(r"(.)\1{24,}", re.DOTALL)
_WORD_RE = re.compile(r"\S+")


@dataclass(frozen=True)
class GroupSample:
    """What the metrics need from one rollout."""

    score: float | None
    thought: str = ""
    suffix: str = ""
    new_tokens: int = 0


def population_std(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def word_count(text: str) -> int:
    return len(_WORD_RE.findall(text))


def artifact_flags(text: str) -> list[str]:
    """Names of the artifact checks ``text`` fails (empty list = clean)."""
    flags = []
    if "\ufffd" in text:
        flags.append("replacement_char")
    if text.count("<think>") > 2 or text.count("</think>") > 2:
        flags.append("think_tags")
    lowered = text.lower()
    if any(p in lowered for p in REFUSAL_PHRASES):
        flags.append("refusal")
    if _REPEAT_RE.search(text):
        flags.append("char_repeat")
    non_space = [c for c in text if not c.isspace()]
    if len(non_space) >= 40 and sum(c.isalpha() for c in non_space) / len(non_space) < 0.35:
        flags.append("low_alpha")
    return flags


def has_artifact(thought: str, suffix: str) -> bool:
    """The reference run flags thought and suffix together (joined by a space)."""
    return bool(artifact_flags(f"{thought} {suffix}"))


def group_stats(groups: Sequence[Sequence[GroupSample]]) -> dict[str, float]:
    """Per-step metrics over groups (see module docstring). Without a valid score ``reward_mean`` and
    ``reward_std`` are NaN: no verdict is no reward, and a 0 would drag step means down."""
    samples = [s for g in groups for s in g]
    valid = [float(s.score) for s in samples if s.score is not None]
    n_groups = max(len(groups), 1)
    mixed = near_zero = all_zero = all_one = complete = 0
    for group in groups:
        scores = [float(s.score) for s in group if s.score is not None]
        complete += bool(group) and len(scores) == len(group)
        if not scores:
            continue
        mean = sum(scores) / len(scores)
        mixed += max(scores) > min(scores)
        near_zero += len(scores) >= 2 and population_std(scores) < NEAR_ZERO_STD
        all_zero += mean <= 0
        all_one += mean >= 1
    n = max(len(samples), 1)
    return {
        "reward_mean": sum(valid) / len(valid) if valid else math.nan,
        "reward_std": population_std(valid) if valid else math.nan,
        "invalid_judge_rate": (len(samples) - len(valid)) / n if samples else 0.0,
        "mixed_group_rate": mixed / n_groups,
        "near_zero_group_rate": near_zero / n_groups,
        "all_zero_group_rate": all_zero / n_groups,
        "all_one_group_rate": all_one / n_groups,
        "kept_complete_group_rate": complete / n_groups,
        "avg_thought_words": sum(word_count(s.thought) for s in samples) / n,
        "avg_suffix_words": sum(word_count(s.suffix) for s in samples) / n,
        "avg_total_new_tokens": sum(s.new_tokens for s in samples) / n,
        "artifact_rate": sum(has_artifact(s.thought, s.suffix) for s in samples) / n,
    }


@dataclass(frozen=True)
class AlertThresholds:
    """docs/method.md §4 stop conditions; each is a config field of the trainer."""

    min_available_mem_gib: float = 4.0
    max_invalid_rate: float = 0.05
    max_artifact_rate: float = 0.10
    max_length_growth: float = 0.20
    max_near_zero_worsening: float = 0.20
    max_near_zero_rate: float = 0.50
    collapse_steps: int = 2


@dataclass
class AlertTracker:
    """Stateful across steps (first-step baselines, consecutive collapse) but computing nothing
    else: :meth:`update` takes one step's metrics and returns the alerts that fire."""

    thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    baseline_new_tokens: float | None = None
    baseline_near_zero: float | None = None
    collapse_streak: int = 0
    history: list[dict] = field(default_factory=list)

    def length_drift(self, avg_total_new_tokens: float) -> float:
        if self.baseline_new_tokens is None:
            self.baseline_new_tokens = avg_total_new_tokens
        return avg_total_new_tokens / self.baseline_new_tokens - 1.0 if self.baseline_new_tokens > 0 else 0.0

    def update(
        self, step: int, metrics: Mapping[str, float], available_mem_gib: float | None = None
    ) -> list[str]:
        t = self.thresholds
        alerts: list[str] = []
        if available_mem_gib is not None and available_mem_gib < t.min_available_mem_gib:
            alerts.append(f"low_memory: {available_mem_gib:.2f} GiB available < {t.min_available_mem_gib}")
        if metrics["invalid_judge_rate"] > t.max_invalid_rate:
            alerts.append(f"judge_invalid_rate: {metrics['invalid_judge_rate']:.3f} > {t.max_invalid_rate}")
        if metrics["artifact_rate"] > t.max_artifact_rate:
            alerts.append(f"artifact_rate: {metrics['artifact_rate']:.3f} > {t.max_artifact_rate}")
        drift = metrics.get("length_drift")
        if drift is not None and drift > t.max_length_growth:
            alerts.append(f"response_length_growth: {drift:.3f} > {t.max_length_growth}")
        near_zero = metrics["near_zero_group_rate"]
        if self.baseline_near_zero is None:
            self.baseline_near_zero = near_zero
        elif near_zero > self.baseline_near_zero + t.max_near_zero_worsening:
            alerts.append(
                f"near_zero_group_worsened: {near_zero:.3f} > step-1 {self.baseline_near_zero:.3f} "
                f"+ {t.max_near_zero_worsening}"
            )
        if near_zero > t.max_near_zero_rate:
            alerts.append(f"near_zero_group_rate: {near_zero:.3f} > {t.max_near_zero_rate}")
        collapsed = metrics["all_zero_group_rate"] >= 1.0 or metrics["all_one_group_rate"] >= 1.0
        self.collapse_streak = self.collapse_streak + 1 if collapsed else 0
        if self.collapse_streak >= t.collapse_steps:
            kind = "all-zero" if metrics["all_zero_group_rate"] >= 1.0 else "all-one"
            alerts.append(
                f"reward_collapsed: every group {kind} for {self.collapse_streak} consecutive steps"
            )
        self.history.append({"step": step, "alerts": alerts})
        return alerts

    def state_dict(self) -> dict:
        return {
            "baseline_new_tokens": self.baseline_new_tokens,
            "baseline_near_zero": self.baseline_near_zero,
            "collapse_streak": self.collapse_streak,
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.baseline_new_tokens = state.get("baseline_new_tokens")
        self.baseline_near_zero = state.get("baseline_near_zero")
        self.collapse_streak = int(state.get("collapse_streak", 0))


def alert_name(alert: str) -> str:
    return alert.split(":", 1)[0]
