"""The Mean@k/Pass@k ``evaluate`` module loads from its local path and agrees with eval.metrics."""

from __future__ import annotations

import evaluate
import pytest
from conftest import REPO_ROOT

from eval.metrics import pass_at_k

METRIC_DIR = str(REPO_ROOT / "eval" / "evaluate_metric")


def test_correctness_config_matches_the_estimator():
    metric = evaluate.load(METRIC_DIR, "correctness")
    flags = [[True, False, False, False], [False] * 4, [True, True, False, True]]
    result = metric.compute(predictions=flags, k=[1, 2, 4])
    assert result["mean_at_k"] == pytest.approx(4 / 12)
    assert result["pass@2"] == pytest.approx((pass_at_k(4, 1, 2) + 0 + pass_at_k(4, 3, 2)) / 3)
    assert result["pass@4"] == pytest.approx(result["pass_at_k_any"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="not in"):
        metric.compute(predictions=flags, k=[5])


def test_default_config_grades_completions():
    metric = evaluate.load(METRIC_DIR)
    result = metric.compute(
        predictions=[[r"so \boxed{18}", "the answer is 17"], [r"\boxed{\frac{1}{2}}", r"\boxed{0.5}"]],
        references=["18", r"\frac{1}{2}"],
        benchmark="math500",
    )
    assert result["mean_at_k"] == pytest.approx(3 / 4) and result["pass@2"] == pytest.approx(1.0)
    assert result["num_problems"] == 2 and result["grader_timeouts"] == 0
