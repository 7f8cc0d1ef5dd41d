"""Reward gate (docs/method.md §5): does an arm earn reward from the RLMT judge, and is that reward usable?

``python -m eval reward-gate --arms think_base think_phase3 ...`` samples 64 held-out prefixes ×
16 samples per arm with the RLMT two-stage rollout (thought ≤48 tokens, inserted ``</think>``,
suffix ≤128 tokens), scores every suffix with the RLMT pointwise judge, and writes

* ``<out>/<arm>.samples.jsonl`` — one row per sample (thought, suffix, token ids, verdict), appended
  as it is judged, so a killed run resumes without losing or duplicating samples;
* ``<out>/summary.json`` — per-arm summary, every pairwise comparison ``{right}_minus_{left}``
  (arms sorted by name) on per-prefix mean reward, and the go/no-go fields.

Every number in ``summary.json`` is recomputed from the sample rows by the pure functions below
(:func:`summarize_arm`, :func:`compare_prefix_means`, :func:`compare_arms`, :func:`go_no_go`).
Group statistics come from :mod:`trl_ext.group_metrics`, the code the RLMT trainer logs with, so
gate and training numbers are counted alike.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.thought_rollouts import (
    JudgeWriter,
    SampleStore,
    add_common_args,
    batched,
    build_judge,
    check_common_args,
    check_or_write_config,
    derive_seed,
    free_memory,
    generation_kwargs,
    load_model,
    load_prompt_rows,
    prompt_sha,
    rejudge_failed,
    resolve_arms,
    sample_row,
    sampling_config,
    select_prefixes,
    write_summary,
)
from trl_ext.group_metrics import GroupSample, group_stats, population_std, word_count

logger = logging.getLogger(__name__)

CONDITION = "two_stage"
TIE_EPS = 1e-9
DEFAULT_OUT = "outputs/eval/reward_gate"
# (phase3-side, base-side) pairs tried in order when --phase3-arm/--base-arm are not given.
PHASE3_BASE_PAIRS = (
    ("think_phase3", "think_base"),
    ("phase3", "base"),
    ("think_phase3_rlmt", "think_base_rlmt"),
)


# --------------------------------------------------------------------------------------- aggregation


def group_by_prefix(records: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    groups: dict[str, list[Mapping]] = {}
    for record in records:
        groups.setdefault(record["prefix_id"], []).append(record)
    return groups


def valid_scores(group: Sequence[Mapping]) -> list[float]:
    return [float(r["score"]) for r in group if r["score"] is not None]


def prefix_mean_rewards(records: Sequence[Mapping]) -> dict[str, float]:
    """Per-prefix mean of valid scores; a prefix with no valid score has no mean and is left out."""
    means = {}
    for prefix_id, group in group_by_prefix(records).items():
        scores = valid_scores(group)
        if scores:
            means[prefix_id] = sum(scores) / len(scores)
    return means


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summarize_arm(records: Sequence[Mapping]) -> dict[str, Any]:
    """docs/method.md §5 per-arm summary from sample rows (see docs/reward_gate.md for definitions).

    Group rates (mixed, near-zero, any/all-success) are over all prefixes of the arm (a prefix
    whose samples are all invalid counts in none of them); ``reward_*`` over valid samples;
    token/word/closing averages over all samples.
    """
    groups = list(group_by_prefix(records).values())
    stats = group_stats(
        [
            [GroupSample(r["score"], r["thought"], r["suffix"], int(r["new_tokens"])) for r in group]
            for group in groups
        ]
    )
    scored = [valid_scores(g) for g in groups]
    scored = [s for s in scored if s]
    group_means = [sum(s) / len(s) for s in scored]
    n_groups = max(len(groups), 1)
    valid = [float(r["score"]) for r in records if r["score"] is not None]
    closed = [r for r in records if r["closed_by_model"]]
    n = len(records)
    return {
        # docs/method.md §5 fields
        "reward_mean": stats["reward_mean"] if valid else math.nan,
        "reward_std": stats["reward_std"] if valid else math.nan,
        "invalid_rate": stats["invalid_judge_rate"],
        "mixed_group_rate": stats["mixed_group_rate"],
        "near_zero_group_rate": stats["near_zero_group_rate"],
        "any_success_group_rate": sum(m > 0 for m in group_means) / n_groups,
        "all_success_group_rate": sum(m >= 1 for m in group_means) / n_groups,
        "avg_total_new_tokens": stats["avg_total_new_tokens"],
        "avg_predicted_suffix_words": stats["avg_suffix_words"],
        "closed_think_rate": sum(bool(r["thought_closed"]) for r in records) / n if n else math.nan,
        "autonomous_closed_think_rate": len(closed) / n if n else math.nan,
        # supporting counts and group statistics (docs/reference_run.md §5 summarize_arm)
        "num_records": n,
        "valid": len(valid),
        "invalid": n - len(valid),
        "reward_min": min(valid) if valid else math.nan,
        "reward_max": max(valid) if valid else math.nan,
        "num_groups": len(groups),
        "num_scored_groups": len(scored),
        "mean_group_reward": _mean(group_means),
        "mean_group_std": _mean([population_std(s) for s in scored]),
        "mean_group_range": _mean([max(s) - min(s) for s in scored]),
        "avg_thought_words": stats["avg_thought_words"],
        "avg_thought_words_when_closed": _mean([word_count(r["thought"]) for r in closed]),
        "artifact_rate": stats["artifact_rate"],
    }


def compare_prefix_means(left: Mapping[str, float], right: Mapping[str, float]) -> dict[str, Any]:
    """``right − left`` on the prefixes both arms scored: mean delta and who wins per prefix."""
    shared = sorted(set(left) & set(right))
    deltas = [right[p] - left[p] for p in shared]
    n = len(shared)
    out: dict[str, Any] = {
        "mean_reward_delta": _mean(deltas),
        "right_better_prefix_rate": sum(d > TIE_EPS for d in deltas) / n if n else math.nan,
        "left_better_prefix_rate": sum(d < -TIE_EPS for d in deltas) / n if n else math.nan,
        "tie_prefix_rate": sum(abs(d) <= TIE_EPS for d in deltas) / n if n else math.nan,
        "shared_prefixes": n,
    }
    if n >= 2:
        from eval.metrics import bootstrap_interval

        out["mean_reward_delta_ci95"] = list(bootstrap_interval(deltas, seed=0))
    return out


def comparison_key(left: str, right: str) -> str:
    return f"{right}_minus_{left}"


def compare_arms(prefix_means: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Every unordered arm pair once: arms sorted by name, key ``{right}_minus_{left}`` with
    ``left`` the earlier name (the reference run's ordering)."""
    return {
        comparison_key(left, right): compare_prefix_means(prefix_means[left], prefix_means[right])
        for left, right in itertools.combinations(sorted(prefix_means), 2)
    }


def pick_phase3_base(
    arms: Sequence[str], phase3: str | None = None, base: str | None = None
) -> tuple[str, str] | None:
    """The (phase3, base) pair the go/no-go compares: the flags, else the first known pair present."""
    if phase3 or base:
        if not (phase3 and base):
            raise SystemExit("error: give both --phase3-arm and --base-arm, or neither")
        missing = [a for a in (phase3, base) if a not in arms]
        if missing:
            raise SystemExit(f"error: --phase3-arm/--base-arm {missing} not among --arms {list(arms)}")
        return phase3, base
    for p3, b in PHASE3_BASE_PAIRS:
        if p3 in arms and b in arms:
            return p3, b
    return None


def go_no_go(
    summaries: Mapping[str, Mapping[str, Any]],
    prefix_means: Mapping[str, Mapping[str, float]],
    pair: tuple[str, str] | None,
    max_invalid_rate: float = 0.05,
    max_near_zero_rate: float = 0.50,
) -> tuple[dict[str, bool | None], dict[str, Any]]:
    """docs/method.md §5 go/no-go fields and the headline phase3-vs-base comparison.

    The phase3 fields are ``None`` when no (phase3, base) pair was evaluated: not measured is
    not the same as false.
    """

    def le(value: float, limit: float) -> bool:
        return not math.isnan(value) and value <= limit

    fields: dict[str, bool | None] = {
        "reward_validity_ok": all(le(s["invalid_rate"], max_invalid_rate) for s in summaries.values()),
        "variance_ok": all(le(s["near_zero_group_rate"], max_near_zero_rate) for s in summaries.values()),
        "phase3_more_reward_separable": None,
        "phase3_higher_mean_reward": None,
    }
    headline: dict[str, Any] = {}
    if pair is not None:
        phase3, base = pair
        p3, b = summaries[phase3], summaries[base]
        fields["phase3_more_reward_separable"] = bool(
            p3["mean_group_std"] > b["mean_group_std"] or p3["mixed_group_rate"] > b["mixed_group_rate"]
        )
        comparison = compare_prefix_means(prefix_means[base], prefix_means[phase3])
        delta = comparison["mean_reward_delta"]
        fields["phase3_higher_mean_reward"] = bool(not math.isnan(delta) and delta > 0)
        headline = {
            "phase3_arm": phase3,
            "base_arm": base,
            "mean_phase3_minus_base_reward": delta,
            "phase3_better_prefix_rate": comparison["right_better_prefix_rate"],
            "base_better_prefix_rate": comparison["left_better_prefix_rate"],
            "tie_prefix_rate": comparison["tie_prefix_rate"],
            "shared_prefixes": comparison["shared_prefixes"],
        }
    return fields, headline


def build_summary(
    records_by_arm: Mapping[str, Sequence[Mapping]],
    pair: tuple[str, str] | None,
    max_invalid_rate: float = 0.05,
    max_near_zero_rate: float = 0.50,
) -> dict[str, Any]:
    """Everything ``summary.json`` reports, from sample rows only."""
    summaries = {arm: summarize_arm(records) for arm, records in records_by_arm.items()}
    means = {arm: prefix_mean_rewards(records) for arm, records in records_by_arm.items()}
    fields, headline = go_no_go(summaries, means, pair, max_invalid_rate, max_near_zero_rate)
    return {
        "arms": summaries,
        "comparisons": compare_arms(means),
        "headline": headline or None,
        "go_no_go": fields,
        "go_no_go_thresholds": {
            "max_invalid_rate": max_invalid_rate,
            "max_near_zero_group_rate": max_near_zero_rate,
        },
    }


# --------------------------------------------------------------------------------------- sampling


def sample_arm(
    arm: str, model_dir: Path, rows: Sequence[dict], store: SampleStore, judge: Any, args: argparse.Namespace
) -> dict[str, int]:
    """Generate and judge every missing (prefix, sample) of one arm; rows are appended per batch."""
    import torch
    from tqdm.auto import tqdm

    from trl_ext.rollout import single_token_id, two_stage_generate

    todo = []  # (row, sample_idx, sha)
    for row in rows:
        sha = prompt_sha(row["prompt"], row["reference"])
        todo += [
            (row, k, sha) for k in range(args.samples) if store.get(CONDITION, row["id"], k, sha) is None
        ]
    counts = {"resumed": len(rows) * args.samples - len(todo), "generated": 0}
    if not todo:
        return counts
    model, tokenizer = load_model(model_dir, args.device, args.dtype)
    close_id = single_token_id(tokenizer, "</think>")
    prompt_cache: dict[str, list[int]] = {}
    batch_size = args.batch_prefixes * args.samples
    bar = tqdm(total=len(todo), desc=f"reward-gate {arm}", unit="sample", disable=args.no_progress)
    with JudgeWriter(judge, store) as writer:
        for batch in batched(todo, batch_size):
            torch.manual_seed(derive_seed(args.seed, arm, batch[0][0]["id"], batch[0][1]))
            prompt_ids = [
                prompt_cache.setdefault(r["id"], tokenizer.encode(r["prompt"], add_special_tokens=False))
                for r, _, _ in batch
            ]
            start = time.perf_counter()
            rollouts = two_stage_generate(
                model, tokenizer, prompt_ids, args.think_max_tokens, args.suffix_max_tokens,
                boundary_text=args.boundary_text, **generation_kwargs(args),
            )  # fmt: skip
            gen_s = time.perf_counter() - start
            new = [
                sample_row(
                    arm, CONDITION, r["id"], k, sha, thought=ro.thought_text, suffix=ro.suffix_text,
                    thought_ids=ro.thought_ids, boundary_ids=ro.boundary_ids, suffix_ids=ro.suffix_ids,
                    closed_by_model=ro.closed_by_model, close_id=close_id, stop_reason=ro.stop_reason,
                )
                for (r, k, sha), ro in zip(batch, rollouts)
            ]  # fmt: skip
            # Judged in a helper thread while the next batch is generated; stored once judged.
            writer.submit([r["prefix"] for r, _, _ in batch], [r["reference"] for r, _, _ in batch], new)
            counts["generated"] += len(new)
            tokens = sum(row["new_tokens"] for row in new)
            bar.set_postfix(gen_tok_s=f"{tokens / max(gen_s, 1e-9):.0f}")
            bar.update(len(new))
    bar.close()
    del model
    free_memory()
    return counts


# --------------------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reward-gate",
        help="docs/method.md §5 reward gate: held-out two-stage rollouts judged by the RLMT judge",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(parser, num_prefixes=64, samples=16, out=DEFAULT_OUT)
    gate = parser.add_argument_group("go/no-go")
    gate.add_argument(
        "--phase3-arm", help="arm on the phase3 side of the go/no-go (default: think_phase3 or phase3)"
    )
    gate.add_argument("--base-arm", help="arm on the base side of the go/no-go (default: think_base or base)")
    gate.add_argument("--max-invalid-rate", type=float, default=0.05, help="reward_validity_ok threshold")
    gate.add_argument("--max-near-zero-rate", type=float, default=0.50, help="variance_ok threshold")
    return parser


def run(args: argparse.Namespace) -> int:
    check_common_args(args)
    out = Path(args.out)
    arms = resolve_arms(args.arms, args.outputs, args.base_model)
    pair = pick_phase3_base([a.name for a in arms], args.phase3_arm, args.base_arm)
    if args.overwrite:
        for arm in arms:
            (out / f"{arm.name}.samples.jsonl").unlink(missing_ok=True)
        for name in ("config.json", "judge_invalid.jsonl", "summary.json", "summary.md"):
            (out / name).unlink(missing_ok=True)
    judge, judge_description = build_judge(args, invalid_log_path=out / "judge_invalid.jsonl")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(arms[0].model_dir)
    all_rows, rows_report = load_prompt_rows(args.rows, tokenizer, args.split)
    rows = select_prefixes(all_rows, args.num_prefixes, args.seed)
    config = sampling_config(args, judge_description, mode="two_stage_external_boundary")
    check_or_write_config(out, config, write=not args.summary_only)
    rows_by_id = {r["id"]: r for r in rows}
    records_by_arm, run_info = {}, {}
    for arm in arms:
        store = SampleStore(out / f"{arm.name}.samples.jsonl")
        info: dict[str, Any] = {"model_dir": str(arm.model_dir)}
        if not args.summary_only:
            if args.rejudge_failed:
                info["rejudged"] = rejudge_failed(store, judge, rows_by_id)
            info.update(sample_arm(arm.name, arm.model_dir, rows, store, judge, args))
        records = store.select(CONDITION, rows_by_id)
        info["expected_records"] = len(rows) * args.samples
        info["complete"] = len(records) == info["expected_records"]
        records_by_arm[arm.name], run_info[arm.name] = records, info
    summary = build_summary(records_by_arm, pair, args.max_invalid_rate, args.max_near_zero_rate)
    summary = {
        **summary,
        "config": config,
        "rows_report": rows_report,
        "prefix_ids": [r["id"] for r in rows],
        "run": run_info,
        "judge_stats": judge.stats.as_dict(),
        "complete": all(i["complete"] for i in run_info.values()),
    }
    write_summary(out, summary)
    table = render_table(summary)
    (out / "summary.md").write_text(table + "\n")
    from eval.plotting import is_random_weight

    plot = plot_reward_distribution(
        {arm: prefix_mean_rewards(r) for arm, r in records_by_arm.items()},
        out,
        judge=judge_description,
        random_weights={arm.name: is_random_weight(arm.model_dir) for arm in arms},
        samples=args.samples,
    )
    print(table)
    print(f"summary: {out / 'summary.json'} (+ summary.md, {plot.name})   samples: {out}/<arm>.samples.jsonl")
    return 0 if summary["complete"] else 3


def plot_reward_distribution(
    prefix_means: Mapping[str, Mapping[str, float]],
    out: Path,
    judge: Any = None,
    random_weights: Mapping[str, bool | None] | None = None,
    samples: int | None = None,
) -> Path:
    """Histogram of per-prefix mean reward per arm: where the gate's reward mass sits (all-zero
    groups at 0, mixed groups in between) is what the mean alone hides. The title names the judge
    (a reward is only as meaningful as its judge) and random-weight arms are flagged."""
    import numpy as np

    from eval.plotting import add_random_note, integer_axis, pyplot, random_note, wrap

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.9))
    arms = sorted(prefix_means)
    ax.hist(
        [list(prefix_means[arm].values()) for arm in arms],
        bins=np.linspace(0, 1, 11),
        label=arms,
        edgecolor="black",
        linewidth=0.5,
    )
    ax.set_xlabel("per-prefix mean reward" + (f" over {samples} samples" if samples else ""))
    ax.set_ylabel("prefixes")
    integer_axis(ax.yaxis)
    prefixes = sorted({len(v) for v in prefix_means.values()})
    judge_name = _judge_name(judge)
    title = (
        f"Reward gate: distribution of per-prefix mean reward\n"
        f"judge: {judge_name}; prefixes: {'/'.join(map(str, prefixes)) or 0}"
    )
    ax.set_title(wrap(title, 80), fontsize=9)
    ax.legend(fontsize=8)
    note = random_note(random_weights or {})
    add_random_note(fig, note)
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    path = out / "reward_distribution.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _judge_name(judge: Any) -> str:
    """A short name for the judge description the gate records in its config."""
    if judge is None:
        return "unknown"
    if isinstance(judge, Mapping):
        keys = ("kind", "name", "model", "prompt", "base_url")
        parts = [str(judge[k]) for k in keys if judge.get(k)]
        return ", ".join(parts) if parts else json.dumps(judge, sort_keys=True)[:120]
    return str(judge)[:120]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def render_table(summary: Mapping[str, Any]) -> str:
    """The reference run's reward-gate tables as markdown (arms, comparisons, go/no-go)."""
    cols = ["reward_mean", "reward_std", "invalid_rate", "mixed_group_rate", "near_zero_group_rate",
            "any_success_group_rate", "all_success_group_rate", "avg_total_new_tokens",
            "avg_predicted_suffix_words", "closed_think_rate", "autonomous_closed_think_rate"]  # fmt: skip
    lines = ["| arm | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for arm, s in summary["arms"].items():
        lines.append(f"| {arm} | " + " | ".join(_fmt(s[c]) for c in cols) + " |")
    ccols = ["mean_reward_delta", "right_better_prefix_rate", "left_better_prefix_rate", "tie_prefix_rate",
             "shared_prefixes"]  # fmt: skip
    if summary["comparisons"]:
        lines += ["", "| comparison | " + " | ".join(ccols) + " |", "|---" * (len(ccols) + 1) + "|"]
        for key, c in summary["comparisons"].items():
            lines.append(f"| {key} | " + " | ".join(_fmt(c[k]) for k in ccols) + " |")
    lines += ["", "go/no-go: " + ", ".join(f"{k}={v}" for k, v in summary["go_no_go"].items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.reward_gate")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return run(
        parser.parse_args(["reward-gate", *(argv if argv is not None else __import__("sys").argv[1:])])
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
