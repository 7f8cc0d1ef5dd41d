"""pass@k against brute-force enumeration; Wilson intervals; aggregation from rows; deltas."""

from __future__ import annotations

import itertools
import math

import pytest

from eval.metrics import macro_average, paired_delta, pass_at_k, score_rows, wilson_interval


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (c correct) that contain a correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_special_cases():
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 1, 8) == 1.0  # k == n: pass@k is "any correct"
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)  # k == 1: the mean
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, 2, 0), (4, 2, 5), (3, -1, 1)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_wilson_interval_known_values():
    # Worked by hand from the closed form; the 0/n and n/n bounds are z^2/(n+z^2) and n/(n+z^2).
    lo, hi = wilson_interval(1113, 10552)  # the reference run's think_base GSM8K Mean@8 counts
    assert lo == pytest.approx(0.09976, abs=2e-5) and hi == pytest.approx(0.11148, abs=2e-5)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.277533, abs=1e-5)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.722467, abs=1e-5)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def _rows(arm, per_problem):
    rows = []
    for pid, outcomes in per_problem.items():
        for i, ok in enumerate(outcomes):
            rows.append({"arm": arm, "id": pid, "sample_idx": i, "correct": ok, "completion_tokens": 10 + i,
                         "finish_reason": "length" if i == 0 else "stop", "extracted": "1" if ok else None,
                         "grade_error": None})  # fmt: skip
    return rows


def test_score_rows_recomputes_every_aggregate():
    rows = _rows("a", {"p1": [True, False, False, False], "p2": [False] * 4, "p3": [True, True, True, False]})
    rows[5]["grade_error"] = "timeout after 10s (worker killed)"
    score = score_rows("a", "gsm8k", rows)
    assert (score.num_problems, score.num_samples, score.samples_per_problem) == (3, 12, 4)
    assert score.correct == 4 and score.mean_at_k == pytest.approx(4 / 12)
    assert score.pass_at_k_any == pytest.approx(2 / 3) and score.pass_at_k_any_problems == 2
    assert score.pass_at[1] == pytest.approx(score.mean_at_k)
    assert score.pass_at[4] == pytest.approx(score.pass_at_k_any)
    expected_p2 = (pass_at_k(4, 1, 2) + pass_at_k(4, 0, 2) + pass_at_k(4, 3, 2)) / 3
    assert score.pass_at[2] == pytest.approx(expected_p2)
    assert score.avg_completion_tokens == pytest.approx(11.5)
    assert score.finish_reasons == {"length": 3, "stop": 9}
    assert score.grader_timeouts == 1 and score.grader_errors == 0
    lo, hi = score.mean_at_k_ci95
    assert lo < score.mean_at_k < hi


def test_macro_average_weights_benchmarks_equally():
    big = score_rows("a", "gsm8k", _rows("a", {f"p{i}": [True] for i in range(100)}))
    small = score_rows("a", "math500", _rows("a", {"q": [False]}))
    macro = macro_average([big, small])
    assert macro["macro_mean_at_k"] == pytest.approx(0.5) and macro["num_benchmarks"] == 2


def test_paired_delta_uses_shared_problems_only():
    left = _rows("l", {"p1": [False, False], "p2": [True, False], "only_left": [True, True]})
    right = _rows("r", {"p1": [True, False], "p2": [True, True], "only_right": [False, False]})
    delta = paired_delta(left, right)
    assert delta["shared_problems"] == 2
    assert delta["mean_at_k_delta"] == pytest.approx(((0.5 - 0) + (1 - 0.5)) / 2)
    assert delta["pass_at_k_any_delta"] == pytest.approx(0.5)
    assert delta["right_better_problems"] == 2 and delta["left_better_problems"] == 0
    lo, hi = delta["mean_at_k_delta_ci95"]
    assert lo <= delta["mean_at_k_delta"] <= hi
