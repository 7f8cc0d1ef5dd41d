"""Metrics of the reasoning suite, recomputed from per-sample rows (never stored counters).

* ``mean_at_k`` — correct samples / samples: the unbiased estimate of pass@1 from k samples.
* ``pass_at_k(n, c, k)`` — the unbiased estimator of Chen et al. (2021), arXiv:2107.03374:
  ``1 - C(n-c, k) / C(n, k)``, averaged over problems. With k == n it is 1[c ≥ 1] ("Pass@k any").
* Wilson 95% score intervals for proportions; for Pass@k with k < n (not a plain proportion)
  a percentile bootstrap over problems.
* Arm-vs-arm deltas paired by problem id, with a paired bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct)
    is correct. Numerically stable product form."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def wilson_interval(successes: float, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (nan, nan) when ``total`` is 0."""
    if total <= 0:
        return (math.nan, math.nan)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of ``values``."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(resamples, arr.size))].mean(axis=1)
    return (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


@dataclass
class BenchmarkScore:
    """Aggregates for one (arm, benchmark); every field is recomputable from the rows."""

    arm: str
    benchmark: str
    num_problems: int
    num_samples: int
    samples_per_problem: int  # the k of Mean@k / Pass@k (minimum over problems)
    correct: int
    mean_at_k: float
    mean_at_k_ci95: tuple[float, float]
    pass_at_k_any: float  # fraction of problems with >= 1 correct among their samples
    pass_at_k_any_problems: int
    pass_at_k_any_ci95: tuple[float, float]
    pass_at: dict[int, float] = field(default_factory=dict)  # unbiased pass@k for each k <= n
    pass_at_ci95: dict[int, tuple[float, float]] = field(default_factory=dict)
    avg_completion_tokens: float = math.nan
    finish_reasons: dict[str, int] = field(default_factory=dict)
    grader_timeouts: int = 0
    grader_errors: int = 0
    unextracted: int = 0
    # How the numbers were obtained, read from the rows ("mixed" if rows disagree; None for rows
    # written before these fields existed).
    preset: str | None = None
    prompt_version: str | None = None
    grader: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["pass_at"] = {str(k): v for k, v in self.pass_at.items()}
        out["pass_at_ci95"] = {str(k): list(v) for k, v in self.pass_at_ci95.items()}
        out["mean_at_k_ci95"] = list(self.mean_at_k_ci95)
        out["pass_at_k_any_ci95"] = list(self.pass_at_k_any_ci95)
        return out


def _ks(n: int) -> list[int]:
    """The k values reported: powers of two up to n, and n itself."""
    ks = sorted({2**i for i in range(int(math.log2(n)) + 1)} | {n}) if n >= 1 else []
    return [k for k in ks if k <= n]


def score_rows(arm: str, benchmark: str, rows: Sequence[Mapping]) -> BenchmarkScore:
    """Aggregate per-sample rows (``id``, ``correct``, ``completion_tokens``, ...) of one benchmark."""
    per_problem: dict[str, list[bool]] = {}
    tokens, reasons = [], {}
    timeouts = errors = unextracted = 0
    for row in rows:
        per_problem.setdefault(str(row["id"]), []).append(bool(row["correct"]))
        if row.get("completion_tokens") is not None:
            tokens.append(row["completion_tokens"])
        reason = str(row.get("finish_reason"))
        reasons[reason] = reasons.get(reason, 0) + 1
        error = row.get("grade_error")
        if error:
            timeouts += error.startswith("timeout")
            errors += not error.startswith("timeout")
        elif row.get("extracted") is None:
            unextracted += 1
    num_samples = sum(len(v) for v in per_problem.values())
    correct = sum(sum(v) for v in per_problem.values())
    k = min((len(v) for v in per_problem.values()), default=0)
    any_correct = sum(any(v) for v in per_problem.values())
    num_problems = len(per_problem)
    pass_at, pass_ci = {}, {}
    for kk in _ks(k):
        values = [pass_at_k(len(v), sum(v), kk) for v in per_problem.values()]
        pass_at[kk] = float(np.mean(values))
        pass_ci[kk] = bootstrap_interval(values)
    protocol = {key: _one_value(rows, key) for key in ("preset", "prompt_version", "grader")}
    return BenchmarkScore(
        **protocol,
        arm=arm,
        benchmark=benchmark,
        num_problems=num_problems,
        num_samples=num_samples,
        samples_per_problem=k,
        correct=correct,
        mean_at_k=correct / num_samples if num_samples else math.nan,
        mean_at_k_ci95=wilson_interval(correct, num_samples),
        pass_at_k_any=any_correct / num_problems if num_problems else math.nan,
        pass_at_k_any_problems=any_correct,
        pass_at_k_any_ci95=wilson_interval(any_correct, num_problems),
        pass_at=pass_at,
        pass_at_ci95=pass_ci,
        avg_completion_tokens=float(np.mean(tokens)) if tokens else math.nan,
        finish_reasons=reasons,
        grader_timeouts=timeouts,
        grader_errors=errors,
        unextracted=unextracted,
    )


def _one_value(rows: Sequence[Mapping], key: str) -> str | None:
    values = {row.get(key) for row in rows}
    if len(values) > 1:
        return "mixed"
    return values.pop() if values else None


def macro_average(scores: Sequence[BenchmarkScore]) -> dict[str, float]:
    """Unweighted mean over benchmarks (each benchmark counts once, whatever its size)."""
    if not scores:
        return {}
    return {
        "num_benchmarks": len(scores),
        "macro_mean_at_k": float(np.mean([s.mean_at_k for s in scores])),
        "macro_pass_at_k_any": float(np.mean([s.pass_at_k_any for s in scores])),
        "macro_avg_completion_tokens": float(np.nanmean([s.avg_completion_tokens for s in scores])),
    }


def per_problem_stats(rows: Sequence[Mapping]) -> dict[str, tuple[int, int, float]]:
    """``id -> (n, c, mean completion tokens)``."""
    acc: dict[str, list] = {}
    for row in rows:
        entry = acc.setdefault(str(row["id"]), [0, 0, []])
        entry[0] += 1
        entry[1] += bool(row["correct"])
        if row.get("completion_tokens") is not None:
            entry[2].append(row["completion_tokens"])
    return {pid: (n, c, float(np.mean(t)) if t else math.nan) for pid, (n, c, t) in acc.items()}


def paired_delta(left_rows: Sequence[Mapping], right_rows: Sequence[Mapping], seed: int = 0) -> dict:
    """``right - left`` on shared problems: Mean@k, Pass@k-any and tokens, with paired bootstrap
    95% intervals (resampling problems, so per-problem difficulty cancels)."""
    left, right = per_problem_stats(left_rows), per_problem_stats(right_rows)
    shared = sorted(set(left) & set(right))
    if not shared:
        return {"shared_problems": 0}
    d_mean = [right[p][1] / right[p][0] - left[p][1] / left[p][0] for p in shared]
    d_any = [float(right[p][1] > 0) - float(left[p][1] > 0) for p in shared]
    d_tok = [right[p][2] - left[p][2] for p in shared]
    return {
        "shared_problems": len(shared),
        "mean_at_k_delta": float(np.mean(d_mean)),
        "mean_at_k_delta_ci95": list(bootstrap_interval(d_mean, seed=seed)),
        "pass_at_k_any_delta": float(np.mean(d_any)),
        "pass_at_k_any_delta_ci95": list(bootstrap_interval(d_any, seed=seed)),
        "avg_completion_tokens_delta": float(np.nanmean(d_tok)) if d_tok else math.nan,
        "right_better_problems": int(sum(d > 0 for d in d_mean)),
        "left_better_problems": int(sum(d < 0 for d in d_mean)),
    }
