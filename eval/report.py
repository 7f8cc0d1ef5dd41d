"""Reports in the reference run's format (docs/reference_results.md), recomputed from the rows.

Writes ``report.md`` (per arm × benchmark table, macro averages, Pass@k for every k, direct
comparisons), ``report.json`` (the same numbers plus intervals) and PNG plots: per-benchmark
bars with 95% intervals and the distribution of per-problem accuracy (the "reward" of a
problem: its fraction of correct samples).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from eval.arms import DEFAULT_COMPARISONS, arm_title
from eval.benchmarks import BENCHMARKS
from eval.metrics import BenchmarkScore, macro_average, paired_delta, per_problem_stats, score_rows
from eval.results import discover, read_samples, write_json
from eval.suite import _finite

BENCH_ORDER = list(BENCHMARKS)


def _display(benchmark: str) -> str:
    return BENCHMARKS[benchmark].display_name if benchmark in BENCHMARKS else benchmark


def _fmt(value: float, digits: int = 6) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def _ci(ci: Sequence[float]) -> str:
    return f"[{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]"


def _signed(value: float, digits: int = 6) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def load_scores(root: str | Path, arms: Sequence[str] | None = None) -> tuple[dict, dict]:
    """``(rows[arm][bench], scores[arm][bench])`` for everything stored under ``root``."""
    files = discover(root, arms)
    order = list(arms) if arms else sorted(files)
    rows = {
        arm: {b: read_samples(p) for b, p in sorted(files[arm].items(), key=lambda kv: _bench_key(kv[0]))}
        for arm in order
    }
    scores = {arm: {b: score_rows(arm, b, r) for b, r in rows[arm].items() if r} for arm in order}
    return rows, scores


def _bench_key(name: str) -> int:
    return BENCH_ORDER.index(name) if name in BENCH_ORDER else len(BENCH_ORDER)


def comparisons_for(
    arms: Sequence[str], requested: Sequence[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """Requested ``(right, left)`` pairs, else the reference run's pairs that are present, else every
    later arm against every earlier one."""
    if requested:
        return list(requested)
    present = [(r, left) for r, left in DEFAULT_COMPARISONS if r in arms and left in arms]
    if present:
        return present
    return [(arms[j], arms[i]) for i in range(len(arms)) for j in range(i + 1, len(arms))]


def build_report(
    root: str | Path, arms: Sequence[str] | None = None, compare: Sequence[tuple[str, str]] | None = None
) -> dict:
    rows, scores = load_scores(root, arms)
    arm_list = list(scores)
    report: dict = {"root": str(root), "arms": arm_list, "scores": {}, "macro": {}, "comparisons": []}
    for arm in arm_list:
        report["scores"][arm] = {b: s.to_dict() for b, s in scores[arm].items()}
        report["macro"][arm] = macro_average(list(scores[arm].values()))
    for right, left in comparisons_for(arm_list, compare):
        if right not in rows or left not in rows:
            raise ValueError(f"comparison {right}:{left} names an arm without results (have {arm_list})")
        for bench in [b for b in rows[right] if b in rows[left]]:
            delta = paired_delta(rows[left][bench], rows[right][bench])
            report["comparisons"].append({"right": right, "left": left, "benchmark": bench, **delta})
        shared = [b for b in scores[right] if b in scores[left]]
        if shared:
            m_r = macro_average([scores[right][b] for b in shared])
            m_l = macro_average([scores[left][b] for b in shared])
            report["comparisons"].append(
                {
                    "right": right,
                    "left": left,
                    "benchmark": "macro",
                    "mean_at_k_delta": m_r["macro_mean_at_k"] - m_l["macro_mean_at_k"],
                    "pass_at_k_any_delta": m_r["macro_pass_at_k_any"] - m_l["macro_pass_at_k_any"],
                    "avg_completion_tokens_delta": m_r["macro_avg_completion_tokens"]
                    - m_l["macro_avg_completion_tokens"],
                }
            )
    report["runs"] = {arm: run_info(root, arm, scores[arm]) for arm in arm_list}
    report["per_problem_accuracy"] = {
        arm: {b: [c / n for n, c, _ in per_problem_stats(r).values()] for b, r in rows[arm].items()}
        for arm in arm_list
    }
    return report


def run_info(root: str | Path, arm: str, scores: dict) -> dict:
    """Preset, grader and model of one arm: from its summary.json (written by the suite), else
    from the rows (preset/grader) with the model unknown."""
    path = Path(root) / arm / "summary.json"
    config = {}
    if path.exists():
        try:
            config = json.loads(path.read_text(encoding="utf-8")).get("config", {})
        except json.JSONDecodeError:
            config = {}

    def from_rows(key: str) -> str | None:
        values = {getattr(s, key) for s in scores.values()}
        return values.pop() if len(values) == 1 else ("mixed" if values else None)

    model = config.get("model") or {}
    return {
        "preset": from_rows("preset") or config.get("preset"),
        "grader": from_rows("grader") or config.get("grader"),
        "model": model.get("name") or arm,
        "model_dir": model.get("dir"),
        "random_weights": model.get("random_weights"),
    }


def _k_label(scores: dict) -> str:
    ks = {s["samples_per_problem"] for per_arm in scores.values() for s in per_arm.values()}
    return str(ks.pop()) if len(ks) == 1 else "k"


def render_markdown(report: dict) -> str:
    k = _k_label(report["scores"])
    out = [
        "# Reasoning eval",
        "",
        f"Results root: `{report['root']}`. Every number is recomputed from the per-sample "
        "JSONL rows; intervals are Wilson 95% (Mean@k over samples, Pass@k any over problems).",
        "",
    ]
    out += [
        f"| Arm | Benchmark | Mean@{k} | Correct / Samples | Mean@{k} 95% CI | Pass@{k} Any "
        "| Pass / Problems "
        f"| Pass@{k} 95% CI | Avg Completion Tokens | Grader timeouts / errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, per_bench in report["scores"].items():
        for bench, s in per_bench.items():
            out.append(
                f"| {arm} | {_display(bench)} | {_fmt(s['mean_at_k'])} | {s['correct']} / {s['num_samples']} "
                f"| {_ci(s['mean_at_k_ci95'])} | {_fmt(s['pass_at_k_any'])} "
                f"| {s['pass_at_k_any_problems']} / {s['num_problems']} | {_ci(s['pass_at_k_any_ci95'])} "
                f"| {_fmt(s['avg_completion_tokens'], 1)} "
                f"| {s['grader_timeouts']} / {s['grader_errors']} |"
            )
    out += [
        "",
        "Macro averages (unweighted over benchmarks):",
        "",
        f"| Arm | Macro Mean@{k} | Macro Pass@{k} Any | Macro Avg Completion Tokens |",
        "|---|---|---|---|",
    ]
    for arm, m in report["macro"].items():
        if m:
            out.append(
                f"| {arm} | {_fmt(m['macro_mean_at_k'])} | {_fmt(m['macro_pass_at_k_any'])} "
                f"| {_fmt(m['macro_avg_completion_tokens'], 1)} |"
            )
    all_ks = sorted(
        {int(kk) for per in report["scores"].values() for s in per.values() for kk in s["pass_at"]}
    )
    if all_ks:
        out += [
            "",
            "Unbiased pass@k (Chen et al. 2021) for every reported k:",
            "",
            "| Arm | Benchmark | " + " | ".join(f"pass@{kk}" for kk in all_ks) + " |",
            "|---|---|" + "---|" * len(all_ks),
        ]
        for arm, per_bench in report["scores"].items():
            for bench, s in per_bench.items():
                cells = [
                    _fmt(s["pass_at"].get(str(kk)), 4) if str(kk) in s["pass_at"] else "" for kk in all_ks
                ]
                out.append(f"| {arm} | {_display(bench)} | " + " | ".join(cells) + " |")
    if report["comparisons"]:
        out += [
            "",
            "Direct reasoning-eval comparisons (right minus left; per-benchmark intervals are paired "
            "bootstrap 95% over shared problems):",
            "",
            f"| Comparison | Benchmark | Mean@{k} Delta | Pass@{k} Any Delta | Avg Token Delta "
            f"| Mean@{k} Delta 95% CI |",
            "|---|---|---|---|---|---|",
        ]
        for c in report["comparisons"]:
            name = f"{arm_title(c['right'])} vs {arm_title(c['left'])}"
            bench = "Macro" if c["benchmark"] == "macro" else _display(c["benchmark"])
            ci = _ci(c["mean_at_k_delta_ci95"]) if "mean_at_k_delta_ci95" in c else ""
            out.append(
                f"| {name} | {bench} | {_signed(c.get('mean_at_k_delta', math.nan))} "
                f"| {_signed(c.get('pass_at_k_any_delta', math.nan))} "
                f"| {_signed(c.get('avg_completion_tokens_delta', math.nan), 1)} | {ci} |"
            )
    return "\n".join(out) + "\n"


def _one(values) -> str:
    values = sorted({str(v) for v in values if v is not None})
    return values[0] if len(values) == 1 else ("/".join(values) if values else "unknown")


def plot_context(report: dict) -> tuple[str, str | None]:
    """The second title line of every suite plot (preset, grader, models, problems per benchmark)
    and the random-weight warning, if any model has random weights."""
    from eval.plotting import random_note

    runs = report.get("runs", {})
    models = ", ".join(
        f"{arm}={runs.get(arm, {}).get('model', arm)}" if runs.get(arm, {}).get("model") != arm else arm
        for arm in report["arms"]
    )
    problems = {}
    for per_bench in report["scores"].values():
        for bench, s in per_bench.items():
            problems.setdefault(_display(bench), set()).add(s["num_problems"])
    counts = ", ".join(f"{b} {_one(n)}" for b, n in problems.items())
    preset = _one(r.get("preset") for r in runs.values())
    grader = _one(r.get("grader") for r in runs.values())
    line = f"preset {preset}, grader {grader}; model: {models}\nproblems: {counts}"
    note = random_note({runs[a].get("model", a): runs[a].get("random_weights") for a in runs})
    return line, note


def render_plots(report: dict, out_dir: Path) -> list[Path]:
    """Per-benchmark bars with intervals and value labels (Mean@k and Pass@k any) and per-problem
    accuracy histograms; every title says k, problems, model and preset."""
    import numpy as np

    from eval.plotting import (
        ZERO_FLOOR,
        add_random_note,
        integer_axis,
        label_bars,
        pyplot,
        visible_bars,
        wrap,
    )

    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    arms = report["arms"]
    benches = sorted({b for per in report["scores"].values() for b in per}, key=_bench_key)
    k = _k_label(report["scores"])
    context, note = plot_context(report)
    paths = []
    for metric, ci_key, label in (
        ("mean_at_k", "mean_at_k_ci95", f"Mean@{k}"),
        ("pass_at_k_any", "pass_at_k_any_ci95", f"Pass@{k} (any of {k} correct)"),
    ):
        fig, ax = plt.subplots(figsize=(max(6.5, 1.8 * len(benches) * max(1, len(arms)) / 2), 4.2))
        width = 0.8 / max(1, len(arms))
        for i, arm in enumerate(arms):
            xs, ys, lo, hi = [], [], [], []
            for j, bench in enumerate(benches):
                s = report["scores"][arm].get(bench)
                if s is None:
                    continue
                xs.append(j + i * width)
                ys.append(s[metric])
                lo.append(max(0.0, s[metric] - s[ci_key][0]))  # float noise at 0 or 1
                hi.append(max(0.0, s[ci_key][1] - s[metric]))
            bars = visible_bars(
                ax, xs, ys, width, yerr=[lo, hi], capsize=3, label=arm, color=f"C{i % 10}", alpha=0.85
            )
            label_bars(ax, bars, ys)
        ax.set_xticks(
            [j + width * (len(arms) - 1) / 2 for j in range(len(benches))], [_display(b) for b in benches]
        )
        ax.set_ylabel(label)
        ax.set_ylim(ZERO_FLOOR, 1.08)
        ax.axhline(0, color="black", linewidth=0.6)
        title = f"{label} per benchmark, k={k} samples/problem (95% Wilson intervals)"
        ax.set_title(wrap(f"{title}\n{context}"), fontsize=9)
        ax.legend(fontsize=8, loc="upper right")
        add_random_note(fig, note)
        fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
        path = out_dir / f"{metric}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    fig, axes = plt.subplots(1, len(benches), figsize=(3.8 * max(2, len(benches)), 3.8), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        data = [report["per_problem_accuracy"][arm].get(bench, []) for arm in arms]
        ax.hist(data, bins=np.linspace(0, 1, 11), label=arms, edgecolor="black", linewidth=0.5)
        problems = _one(len(d) for d in data if d)
        ax.set_title(f"{_display(bench)} ({problems} problems)", fontsize=9)
        ax.set_xlabel(f"fraction of the {k} samples correct")
        integer_axis(ax.yaxis)
    for ax in axes[0][len(benches) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("problems")
    axes[0][len(benches) - 1].legend(fontsize=8)
    fig.suptitle(wrap(f"Per-problem accuracy, k={k}\n{context}", 40 * max(2, len(benches))), fontsize=9)
    add_random_note(fig, note)
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    path = out_dir / "per_problem_accuracy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths


def write_report(
    root: str | Path,
    arms: Sequence[str] | None = None,
    compare: Sequence[tuple[str, str]] | None = None,
    out_dir: str | Path | None = None,
    plots: bool = True,
) -> dict:
    """Write report.md, report.json and plots/*.png under ``out_dir`` (default: ``root``)."""
    report = build_report(root, arms, compare)
    out = Path(out_dir or root)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    if plots:
        report["plots"] = [str(p) for p in render_plots(report, out / "plots")]
    write_json(out / "report.json", _finite({k: v for k, v in report.items() if k != "per_problem_accuracy"}))
    return report


__all__ = ["BenchmarkScore", "build_report", "render_markdown", "write_report"]
