"""Plots people read: titles say k, problems, model and preset; bars carry value labels; a bar of
height 0 is still drawn; counts have integer ticks; the reward gate names its judge; random-weight
models are flagged. Each check reads the matplotlib figure just before it is saved."""

from __future__ import annotations

import pytest

from eval.results import append_row
from eval.suite import write_summary


def _rows(root, arm, bench, n_problems, k, correct_every):
    for i in range(n_problems):
        for s in range(k):
            row = {
                "arm": arm, "benchmark": bench, "id": f"{bench}-{i}", "sample_idx": s, "prompt_hash": "h",
                "completion": "x", "extracted": None, "gold": "1",
                "correct": bool(correct_every) and (i * k + s) % correct_every == 0,
                "completion_tokens": 10, "finish_reason": "length", "permutation": None, "grade_error": None,
                "preset": "seed", "prompt_version": "seed-f5a982a", "grader": "seed_exact",
            }  # fmt: skip
            append_row(root / arm / f"{bench}.jsonl", row)


@pytest.fixture
def saved_figures(monkeypatch):
    """Every figure saved during the test, keyed by file name."""
    from matplotlib.figure import Figure

    figures = {}
    original = Figure.savefig

    def capture(self, path, *args, **kwargs):
        figures[str(path).rsplit("/", 1)[-1]] = self
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    return figures


def _texts(fig) -> str:
    parts = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        parts += [ax.get_title(), *(t.get_text() for t in ax.texts)]
    return "\n".join(parts)


def test_suite_plots_say_what_they_show(tmp_path, saved_figures, tiny_model_dir):
    from eval.report import write_report

    _rows(tmp_path, "base", "gsm8k", 6, 4, correct_every=3)
    _rows(tmp_path, "base", "math500", 3, 4, correct_every=0)  # all wrong: a zero-height bar
    model = {"name": "tiny-qwen3", "dir": str(tiny_model_dir), "random_weights": True}
    write_summary(tmp_path, "base", ["gsm8k", "math500"], {"preset": "seed", "model": model})
    write_report(tmp_path)

    mean = saved_figures["mean_at_k.png"]
    text = _texts(mean)
    for expected in (
        "Mean@4",
        "k=4",
        "preset seed",
        "grader seed_exact",
        "tiny-qwen3",
        "GSM8K 6",
        "MATH-500 3",
    ):
        assert expected in text, (expected, text)
    assert "RANDOM-WEIGHT MODEL" in text
    ax = mean.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert "0.333" in labels and "0.000" in labels  # value labels, including the zero bar's
    assert ax.get_ylim()[0] < 0  # the axis starts below 0 ...
    zero_lines = [c for c in ax.collections if c.get_linewidth()[0] >= 4]
    assert zero_lines, "... and a height-0 bar is drawn as a thick line in its colour"
    assert "Pass@4" in _texts(saved_figures["pass_at_k_any.png"])

    hist = saved_figures["per_problem_accuracy.png"]
    assert "GSM8K (6 problems)" in _texts(hist) and "k=4" in _texts(hist)
    ticks = hist.axes[0].get_yticks()
    assert all(float(t).is_integer() for t in ticks)  # counts: integer ticks only


def test_trained_model_without_random_weights_has_no_warning(tmp_path, saved_figures):
    from eval.report import write_report

    _rows(tmp_path, "qwen", "gsm8k", 2, 2, correct_every=2)
    write_summary(
        tmp_path,
        "qwen",
        ["gsm8k"],
        {"preset": "seed", "model": {"name": "Qwen3-0.6B-Base", "random_weights": False}},
    )
    write_report(tmp_path)
    assert "RANDOM-WEIGHT" not in _texts(saved_figures["mean_at_k.png"])


def test_reward_gate_histogram_names_the_judge(tmp_path, saved_figures, tiny_model_dir):
    from eval.plotting import is_random_weight
    from eval.reward_gate import plot_reward_distribution

    means = {
        "think_base": {"p0": 0.0, "p1": 0.25, "p2": 0.25},
        "think_phase3": {"p0": 0.5, "p1": 0.0, "p2": 1.0},
    }
    judge = {"kind": "llm", "model": "qwen-judge", "prompt": "rlmt_pointwise_v1"}
    assert is_random_weight(tiny_model_dir) is True
    plot_reward_distribution(
        means, tmp_path, judge=judge, random_weights={"think_base": True, "think_phase3": None}, samples=4
    )
    fig = saved_figures["reward_distribution.png"]
    text = _texts(fig)
    assert "judge: llm, qwen-judge, rlmt_pointwise_v1" in text and "prefixes: 3" in text
    assert "RANDOM-WEIGHT MODEL (think_base)" in text
    assert all(float(t).is_integer() for t in fig.axes[0].get_yticks())
