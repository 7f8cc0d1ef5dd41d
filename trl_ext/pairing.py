"""Candidate-pool scoring and chosen/rejected selection for K-way pairwise online DPO (docs/method.md §2).

Everything here is pure Python (no model, no judge, no I/O) so that the parts of the method that decide
*which*
pair is trained on can be tested on hand-made cases:

* :func:`plan_comparisons` lists the judge calls for one prefix: every unordered pair (``"full"``, N·(N−1)/2
  calls, 136 for 17 candidates) or each non-pivot candidate against the pivot only (``"pivot"``, N−1 calls),
  each repeated ``repeats`` times, with a seeded random A/B swap per call so that a judge's position bias
  cancels out in expectation.
* :func:`score_pool` turns the judge's answers (``1``, ``2`` or ``None`` = invalid) into pointwise scores: the
  share of valid votes each candidate won. Invalid answers are excluded, never counted as a win for anyone.
* :func:`select_pair` picks chosen = argmax and rejected = argmin; ties go to the first candidate in a seeded
  random permutation (:func:`tie_order`), so every tied candidate is equally likely whatever its position; an
  all-tie pool yields ``None`` (the prefix is skipped).
* :func:`summarize_pools` aggregates a batch of pools into the docs/method.md §2 pool metrics.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

JudgingMode = Literal["full", "pivot"]
JUDGING_MODES: tuple[str, ...] = ("full", "pivot")


@dataclass(frozen=True)
class Comparison:
    """One judge call: candidates ``i < j``; ``swapped`` means candidate ``j`` is shown as Option 1."""

    i: int
    j: int
    repeat: int
    swapped: bool

    @property
    def option_1(self) -> int:
        return self.j if self.swapped else self.i

    @property
    def option_2(self) -> int:
        return self.i if self.swapped else self.j

    def winner(self, verdict: int | None) -> int | None:
        """Candidate index that won, given the judge's ``1``/``2`` answer (``None`` stays invalid)."""
        if verdict is None:
            return None
        if verdict not in (1, 2):
            raise ValueError(f"pairwise verdict must be 1, 2 or None, got {verdict!r}")
        return self.option_1 if verdict == 1 else self.option_2


def expected_num_calls(num_candidates: int, mode: JudgingMode = "full", repeats: int = 1) -> int:
    """Judge calls per prefix: N·(N−1)/2·repeats in full mode, (N−1)·repeats in pivot mode."""
    if mode == "full":
        return num_candidates * (num_candidates - 1) // 2 * repeats
    if mode == "pivot":
        return (num_candidates - 1) * repeats
    raise ValueError(f"judging mode must be one of {JUDGING_MODES}, got {mode!r}")


def pool_rng(seed: int, step: int, rank: int, prefix_key: str | int) -> random.Random:
    """A generator private to one (seed, step, process, prefix): reproducible, and different across ranks.

    String seeding is hashed with SHA-512 by :class:`random.Random`, so it is stable across Python runs
    (unlike ``hash()``).
    """
    return random.Random(f"trl_ext.pairing:{seed}:{step}:{rank}:{prefix_key}")


def plan_comparisons(
    num_candidates: int,
    rng: random.Random,
    mode: JudgingMode = "full",
    pivot_index: int = 0,
    repeats: int = 1,
) -> list[Comparison]:
    """List the judge calls for one pool, each with its own coin flip for the A/B order."""
    if num_candidates < 2:
        raise ValueError(f"a pool needs at least 2 candidates, got {num_candidates}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if mode == "full":
        pairs = [(i, j) for i in range(num_candidates) for j in range(i + 1, num_candidates)]
    elif mode == "pivot":
        if not 0 <= pivot_index < num_candidates:
            raise ValueError(f"pivot_index {pivot_index} outside a pool of {num_candidates}")
        pairs = [tuple(sorted((pivot_index, k))) for k in range(num_candidates) if k != pivot_index]
    else:
        raise ValueError(f"judging mode must be one of {JUDGING_MODES}, got {mode!r}")
    return [Comparison(i, j, r, rng.random() < 0.5) for (i, j) in pairs for r in range(repeats)]


@dataclass
class PoolScores:
    """Pointwise scores of one pool: ``scores[k]`` = share of valid votes won (``nan`` if it had none)."""

    scores: list[float]
    wins: list[int]
    votes: list[int]
    num_calls: int
    num_invalid: int

    @property
    def invalid_rate(self) -> float:
        return self.num_invalid / self.num_calls if self.num_calls else 0.0


def score_pool(
    num_candidates: int, comparisons: Sequence[Comparison], verdicts: Sequence[int | None]
) -> PoolScores:
    """Turn judge answers into pointwise scores; invalid answers count for nobody."""
    if len(comparisons) != len(verdicts):
        raise ValueError(f"{len(comparisons)} comparisons but {len(verdicts)} verdicts")
    wins = [0] * num_candidates
    votes = [0] * num_candidates
    invalid = 0
    for comp, verdict in zip(comparisons, verdicts):
        winner = comp.winner(verdict)
        if winner is None:
            invalid += 1
            continue
        votes[comp.i] += 1
        votes[comp.j] += 1
        wins[winner] += 1
    scores = [w / v if v else math.nan for w, v in zip(wins, votes)]
    return PoolScores(scores=scores, wins=wins, votes=votes, num_calls=len(comparisons), num_invalid=invalid)


def tie_order(seed: int, step: int, rank: int, prefix_key: str | int, num_candidates: int) -> list[int]:
    """The order in which tied candidates are considered: a seeded uniformly random permutation.

    A rotation (scan from a random start) is not enough: with the pivot first and a rewrite last, the rewrite
    would come before the pivot in N-1 of N rotations and win that share of their ties.
    """
    order = list(range(num_candidates))
    random.Random(f"trl_ext.ties:{seed}:{step}:{rank}:{prefix_key}").shuffle(order)
    return order


@dataclass(frozen=True)
class PairChoice:
    chosen: int
    rejected: int
    chosen_score: float
    rejected_score: float


def select_pair(scores: Sequence[float], order: Sequence[int] | None = None) -> PairChoice | None:
    """chosen = argmax, rejected = argmin over scored candidates; ties go to the first of them in ``order``
    (a permutation of the indices, e.g. :func:`tie_order`; default: index order).

    Returns ``None`` when fewer than two candidates have a score or all scores are equal (nothing to learn).
    """
    n = len(scores)
    order = list(range(n)) if order is None else list(order)
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of range({n}), got {order}")
    valid = [k for k in order if not math.isnan(scores[k])]
    if len(valid) < 2:
        return None
    top = max(scores[k] for k in valid)
    bottom = min(scores[k] for k in valid)
    if top == bottom:
        return None
    chosen = next(k for k in valid if scores[k] == top)
    rejected = next(k for k in valid if scores[k] == bottom)
    return PairChoice(chosen, rejected, top, bottom)


@dataclass
class PoolRecord:
    """Everything about one prefix's pool that the metrics need (kinds: ``pivot``, ``rollout``,
    ``rewrite``)."""

    kinds: list[str]
    scores: PoolScores
    choice: PairChoice | None
    extra: dict[str, float] = field(default_factory=dict)


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan


def summarize_pools(records: Sequence[PoolRecord]) -> dict[str, float]:
    """docs/method.md §2 pool metrics of a batch of prefixes (rates over kept prefixes; nan if undefined)."""
    kept = [r for r in records if r.choice is not None]
    pivot_scores, rollout_scores, rewrite_scores, tops, bottoms = [], [], [], [], []
    for r in records:
        valid = [s for s in r.scores.scores if not math.isnan(s)]
        if valid:
            tops.append(max(valid))
            bottoms.append(min(valid))
        for kind, s in zip(r.kinds, r.scores.scores):
            {"pivot": pivot_scores, "rollout": rollout_scores, "rewrite": rewrite_scores}[kind].append(s)
    calls = sum(r.scores.num_calls for r in records)
    invalid = sum(r.scores.num_invalid for r in records)

    def rate(pick: str, kind: str) -> float:
        if not kept:
            return math.nan
        return sum(r.kinds[getattr(r.choice, pick)] == kind for r in kept) / len(kept)

    out = {
        "dpo_kept_prefixes": float(len(kept)),
        "dpo_total_prefixes": float(len(records)),
        "dpo_all_tie_prefixes": float(sum(r.choice is None for r in records)),
        "pivot_pointwise_mean": _mean(pivot_scores),
        "rollout_pointwise_mean": _mean(rollout_scores),
        "pool_top_score_mean": _mean(tops),
        "pool_bottom_score_mean": _mean(bottoms),
        "chosen_is_pivot_rate": rate("chosen", "pivot"),
        "chosen_is_rollout_rate": rate("chosen", "rollout"),
        "rejected_is_pivot_rate": rate("rejected", "pivot"),
        "judge_calls": float(calls),
        "judge_invalid_rate": invalid / calls if calls else 0.0,
    }
    out["rollout_minus_pivot_gap"] = out["rollout_pointwise_mean"] - out["pivot_pointwise_mean"]
    if rewrite_scores:
        out["rewrite_pointwise_mean"] = _mean(rewrite_scores)
        out["chosen_is_rewrite_rate"] = rate("chosen", "rewrite")
    return out
