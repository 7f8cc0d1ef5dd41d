"""Thought-use probe (docs/method.md §7): does the suffix depend on *this* thought?

``python -m eval thought-probe --arms think_base think_phase3 ...`` first samples a bank of
thoughts per held-out prefix with the RLMT two-stage rollout (``--bank-size`` samples, default 16;
each comes with its own suffix and verdict: the ``normal_model_thought`` condition). Then, for
the first ``--samples`` bank entries of every prefix, it regenerates the suffix from
``prompt + thought + </think>`` with the thought replaced:

* ``blank_thought`` — empty;
* ``generic_thought`` — one of four fixed neutral sentences, index (prefix index + sample) mod 4;
* ``same_arm_swapped_thought`` — the same arm's thought for another prefix, under a seeded
  *deranged* prefix permutation (no prefix keeps its own thought);
* ``teacher_thought`` — the teacher's thought at that position (from the RL row).

Every suffix is scored by the RLMT judge (prefix, reference, suffix; never the thought). Reported
per arm: reward per condition, ``normal_minus_<cond>`` per-prefix deltas, and oracle@k over the
thought bank — the expected best reward among k thoughts drawn from a prefix's bank, i.e. what a
perfect selector would get (a diagnostic bound, not an achievable score).

Outputs: ``<out>/<arm>.samples.jsonl`` (one row per (condition, prefix, sample), resumable) and
``<out>/summary.json``. Aggregation is in pure functions below, recomputed from the rows.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
from collections.abc import Mapping, Sequence
from math import comb
from pathlib import Path
from typing import Any

from eval.reward_gate import compare_prefix_means, group_by_prefix, prefix_mean_rewards, valid_scores
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
    progress,
    prompt_sha,
    rejudge_failed,
    resolve_arms,
    sample_row,
    sampling_config,
    select_prefixes,
    write_summary,
)
from trl_ext.group_metrics import population_std, word_count

logger = logging.getLogger(__name__)

NORMAL = "normal_model_thought"
CONDITIONS = (NORMAL, "blank_thought", "generic_thought", "same_arm_swapped_thought", "teacher_thought")
# Conditions that replace the thought with something carrying no prefix-specific content from this
# model; ``normal_beats_best_control`` compares against the best of them. The teacher thought is
# a different *source* of thought, reported but not a control.
CONTROLS = ("blank_thought", "generic_thought", "same_arm_swapped_thought")
GENERIC_THOUGHTS = (
    "Continue from where the text stops, using the context above.",
    "Keep the same topic, voice and level of detail as the passage so far.",
    "The next sentences should follow naturally from what has just been said.",
    "Stay consistent with the facts and names already given in the text.",
)
DEFAULT_OUT = "outputs/eval/thought_probe"


# --------------------------------------------------------------------------------------- pure parts


def deranged_permutation(n: int, seed: int) -> list[int]:
    """A uniformly drawn derangement of ``range(n)`` (``perm[i] != i`` for every i), seeded.

    Rejection sampling: a uniform shuffle is a derangement with probability ≈ 1/e, so this takes
    about 2.7 shuffles on average and every derangement is equally likely.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    rng = random.Random(seed)
    perm = list(range(n))
    while True:
        rng.shuffle(perm)
        if all(p != i for i, p in enumerate(perm)):
            return perm


def generic_thought(prefix_index: int, sample_idx: int) -> str:
    return GENERIC_THOUGHTS[(prefix_index + sample_idx) % len(GENERIC_THOUGHTS)]


def expected_max_at_k(scores: Sequence[float], k: int) -> float:
    """Expected maximum score of ``k`` items drawn without replacement from ``scores``.

    With ascending order ``s_1 ≤ … ≤ s_n``, ``s_i`` is the maximum of exactly ``C(i−1, k−1)`` of the
    ``C(n, k)`` subsets. For 0/1 scores this is the unbiased pass@k estimator
    ``1 − C(n−c, k) / C(n, k)``; for graded scores it is the expected best-of-k.
    """
    n = len(scores)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    ordered = sorted(float(s) for s in scores)
    total = comb(n, k)
    return sum(s * comb(i, k - 1) for i, s in enumerate(ordered) if i >= k - 1) / total


def oracle_ks(bank_size: int) -> list[int]:
    """1, 2, 4, … up to the bank size, and the bank size itself."""
    ks, k = [], 1
    while k < bank_size:
        ks.append(k)
        k *= 2
    return [*ks, bank_size]


def oracle_at_k(bank: Mapping[str, Sequence[float]], ks: Sequence[int]) -> dict[str, Any]:
    """Mean over prefixes of :func:`expected_max_at_k` of each prefix's valid bank scores.

    A prefix with fewer than k valid scores cannot be drawn from at k and is left out of that k
    (``oracle_prefixes_at_k`` says how many were used). ``oracle_at_1`` is the expected reward of
    picking a bank thought at random.
    """
    out: dict[str, Any] = {}
    for k in ks:
        values = [expected_max_at_k(scores, k) for scores in bank.values() if len(scores) >= k]
        out[f"oracle_at_{k}"] = sum(values) / len(values) if values else math.nan
        out[f"oracle_prefixes_at_{k}"] = len(values)
    return out


def summarize_condition(records: Sequence[Mapping]) -> dict[str, Any]:
    """Reward of one condition: sample-level mean/std over valid verdicts, prefix-level means
    and success rates over prefixes (a prefix with no valid verdict counts in neither rate)."""
    valid = [float(r["score"]) for r in records if r["score"] is not None]
    groups = list(group_by_prefix(records).values())
    means = [sum(s) / len(s) for s in (valid_scores(g) for g in groups) if s]
    n, n_groups = len(records), max(len(groups), 1)
    return {
        "reward_mean": sum(valid) / len(valid) if valid else math.nan,
        "reward_std": population_std(valid) if valid else math.nan,
        "invalid_rate": (n - len(valid)) / n if n else math.nan,
        "num_records": n,
        "valid": len(valid),
        "num_prefixes": len(groups),
        "prefix_mean_reward": sum(means) / len(means) if means else math.nan,
        "any_success_prefix_rate": sum(m > 0 for m in means) / n_groups,
        "all_success_prefix_rate": sum(m >= 1 for m in means) / n_groups,
        "avg_suffix_words": sum(word_count(r["suffix"]) for r in records) / n if n else math.nan,
        "avg_thought_words": sum(word_count(r["thought"]) for r in records) / n if n else math.nan,
    }


def condition_deltas(records_by_condition: Mapping[str, Sequence[Mapping]]) -> dict[str, dict[str, Any]]:
    """``normal_minus_<cond>`` on per-prefix mean reward over the prefixes both conditions scored."""
    normal = prefix_mean_rewards(records_by_condition[NORMAL])
    out = {}
    for condition, records in records_by_condition.items():
        if condition == NORMAL:
            continue
        c = compare_prefix_means(left=prefix_mean_rewards(records), right=normal)
        out[f"normal_minus_{condition}"] = {
            "mean_delta": c["mean_reward_delta"],
            "normal_better_prefix_rate": c["right_better_prefix_rate"],
            "condition_better_prefix_rate": c["left_better_prefix_rate"],
            "tie_prefix_rate": c["tie_prefix_rate"],
            "shared_prefixes": c["shared_prefixes"],
            **({"mean_delta_ci95": c["mean_reward_delta_ci95"]} if "mean_reward_delta_ci95" in c else {}),
        }
    return out


def summarize_probe_arm(records: Sequence[Mapping], samples: int, bank_size: int) -> dict[str, Any]:
    """Per-arm probe summary from the arm's sample rows (all conditions, the whole bank)."""
    by_condition: dict[str, list[Mapping]] = {}
    for record in records:
        if record["sample_idx"] < samples:  # conditions are compared on the same (prefix, sample) set
            by_condition.setdefault(record["condition"], []).append(record)
    conditions = {c: summarize_condition(by_condition[c]) for c in CONDITIONS if c in by_condition}
    bank = {
        prefix_id: valid_scores(group)
        for prefix_id, group in group_by_prefix([r for r in records if r["condition"] == NORMAL]).items()
    }
    summary: dict[str, Any] = {
        "conditions": conditions,
        "deltas": condition_deltas(by_condition) if NORMAL in by_condition else {},
        "thought_bank": {"bank_size": bank_size, **oracle_at_k(bank, oracle_ks(bank_size))},
    }
    controls = {c: conditions[c]["reward_mean"] for c in CONTROLS if c in conditions}
    if NORMAL in conditions and controls:
        best = max(controls, key=lambda c: -math.inf if math.isnan(controls[c]) else controls[c])
        summary["best_control"] = best
        summary["normal_beats_best_control"] = bool(conditions[NORMAL]["reward_mean"] > controls[best])
    return summary


# --------------------------------------------------------------------------------------- sampling


def _sample_bank(arm, rows, store, judge, args, model, tokenizer, close_id) -> int:
    """Stage A: the thought bank = two-stage rollouts (thought + own suffix), ``bank_size`` per prefix."""
    import torch

    from trl_ext.rollout import two_stage_generate

    todo = []
    for row in rows:
        sha = prompt_sha(row["prompt"], row["reference"])
        todo += [(row, k, sha) for k in range(args.bank_size) if store.get(NORMAL, row["id"], k, sha) is None]
    bar = progress(len(todo), f"thought-probe {arm} bank", args)
    with JudgeWriter(judge, store) as writer:
        for batch in batched(todo, args.batch_prefixes * args.samples):
            torch.manual_seed(derive_seed(args.seed, arm, NORMAL, batch[0][0]["id"], batch[0][1]))
            prompts = [tokenizer.encode(r["prompt"], add_special_tokens=False) for r, _, _ in batch]
            rollouts = two_stage_generate(
                model, tokenizer, prompts, args.think_max_tokens, args.suffix_max_tokens,
                boundary_text=args.boundary_text, **generation_kwargs(args),
            )  # fmt: skip
            new = [
                sample_row(
                    arm, NORMAL, r["id"], k, sha, thought=ro.thought_text, suffix=ro.suffix_text,
                    thought_ids=ro.thought_ids, boundary_ids=ro.boundary_ids, suffix_ids=ro.suffix_ids,
                    closed_by_model=ro.closed_by_model, close_id=close_id, stop_reason=ro.stop_reason,
                )
                for (r, k, sha), ro in zip(batch, rollouts)
            ]  # fmt: skip
            writer.submit([r["prefix"] for r, _, _ in batch], [r["reference"] for r, _, _ in batch], new)
            bar.update(len(new))
    bar.close()
    return len(todo)


def condition_thought(
    condition: str, index: int, sample_idx: int, rows: Sequence[dict], perm: Sequence[int] | None,
    store: SampleStore, tokenizer: Any,
) -> tuple[list[int], str, str | None]:  # fmt: skip
    """The thought (ids, text, source prefix id) a condition puts between prompt and boundary."""
    if condition == "blank_thought":
        return [], "", None
    if condition == "generic_thought":
        text = generic_thought(index, sample_idx)
        return tokenizer.encode(text, add_special_tokens=False), text, None
    if condition == "teacher_thought":
        text = rows[index]["teacher_thought"]
        return tokenizer.encode(text, add_special_tokens=False), text, rows[index]["id"]
    if condition == "same_arm_swapped_thought":
        partner = rows[perm[index]]
        donor = store.rows.get((NORMAL, partner["id"], sample_idx))
        if donor is None:
            raise RuntimeError(f"no bank thought for prefix {partner['id']} sample {sample_idx} to swap in")
        ids = donor["thought_ids"][:-1] if donor["closed_by_model"] else donor["thought_ids"]
        return list(ids), donor["thought"], partner["id"]
    raise ValueError(f"unknown condition {condition!r}")


def _sample_condition(condition, arm, rows, perm, store, judge, args, model, tokenizer, close_id) -> int:
    """Stage B: regenerate the suffix with the condition's thought and the inserted boundary."""
    import torch

    from trl_ext.rollout import single_stage_generate

    boundary = tokenizer.encode(args.boundary_text, add_special_tokens=False)
    todo = []
    for index, row in enumerate(rows):
        sha = prompt_sha(row["prompt"], row["reference"])
        todo += [
            (index, k, sha) for k in range(args.samples) if store.get(condition, row["id"], k, sha) is None
        ]
    bar = progress(len(todo), f"thought-probe {arm} {condition}", args)
    with JudgeWriter(judge, store) as writer:
        for batch in batched(todo, args.batch_prefixes * args.samples):
            torch.manual_seed(derive_seed(args.seed, arm, condition, rows[batch[0][0]]["id"], batch[0][1]))
            thoughts = [condition_thought(condition, i, k, rows, perm, store, tokenizer) for i, k, _ in batch]
            # Same context shape as the rollout's stage 2: prompt | thought | inserted </think>.
            contexts = [
                tokenizer.encode(rows[i]["prompt"], add_special_tokens=False) + ids + boundary
                for (i, _, _), (ids, _, _) in zip(batch, thoughts)
            ]
            suffixes = single_stage_generate(
                model, tokenizer, contexts, max_new_tokens=args.suffix_max_tokens, **generation_kwargs(args)
            )
            texts = tokenizer.batch_decode(suffixes, skip_special_tokens=True)
            new = [
                sample_row(
                    arm, condition, rows[i]["id"], k, sha, thought=text, suffix=suffix_text, thought_ids=ids,
                    boundary_ids=boundary, suffix_ids=suffix, closed_by_model=False, close_id=close_id,
                    thought_source=source,
                )
                for (i, k, sha), (ids, text, source), suffix, suffix_text
                in zip(batch, thoughts, suffixes, texts)
            ]  # fmt: skip
            writer.submit(
                [rows[i]["prefix"] for i, _, _ in batch], [rows[i]["reference"] for i, _, _ in batch], new
            )
            bar.update(len(new))
    bar.close()
    return len(todo)


def probe_arm(arm, model_dir, rows, perm, store, judge, args, conditions) -> dict[str, int]:
    """Generate and judge everything missing for one arm: the bank first (swapped thoughts need
    every prefix's bank), then each condition."""
    from trl_ext.rollout import single_token_id

    model = tokenizer = None
    counts: dict[str, int] = {}

    def loaded():
        nonlocal model, tokenizer
        if model is None:
            model, tokenizer = load_model(model_dir, args.device, args.dtype)
        return model, tokenizer

    needs_bank = any(
        store.rows.get((NORMAL, r["id"], k)) is None for r in rows for k in range(args.bank_size)
    )
    if needs_bank:
        m, t = loaded()
        counts[NORMAL] = _sample_bank(arm, rows, store, judge, args, m, t, single_token_id(t, "</think>"))
        logger.info("%s: bank of %d thoughts per prefix ready", arm, args.bank_size)
    for condition in conditions:
        if condition == NORMAL:
            continue
        missing = any(
            store.rows.get((condition, r["id"], k)) is None for r in rows for k in range(args.samples)
        )
        if missing:
            m, t = loaded()
            counts[condition] = _sample_condition(
                condition, arm, rows, perm, store, judge, args, m, t, single_token_id(t, "</think>")
            )
            logger.info("%s: %s done (%d new samples)", arm, condition, counts[condition])
    if model is not None:
        model = None
        free_memory()
    return counts


# --------------------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "thought-probe",
        help="docs/method.md §7 thought-use probe: reward under normal, blank, generic, swapped, "
        "teacher thoughts",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(parser, num_prefixes=32, samples=4, out=DEFAULT_OUT)
    parser.add_argument(
        "--bank-size", type=int, default=16, help="sampled thoughts per prefix for oracle@k (≥ --samples)"
    )
    parser.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help=f"comma list from {', '.join(CONDITIONS)} ({NORMAL} is always run: it is the bank)",
    )
    return parser


def _parse_conditions(text: str) -> list[str]:
    wanted = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in CONDITIONS]
    if unknown:
        raise SystemExit(f"error: --conditions: unknown {unknown}; choose from {list(CONDITIONS)}")
    return [NORMAL, *[c for c in CONDITIONS if c in wanted and c != NORMAL]]


def run(args: argparse.Namespace) -> int:
    check_common_args(args)
    if args.bank_size < args.samples:
        raise SystemExit(f"error: --bank-size ({args.bank_size}) must be ≥ --samples ({args.samples})")
    conditions = _parse_conditions(args.conditions)
    out = Path(args.out)
    arms = resolve_arms(args.arms, args.outputs, args.base_model)
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
    if "teacher_thought" in conditions:
        lacking = [r["id"] for r in rows if not r.get("teacher_thought", "").strip()]
        if lacking:
            raise SystemExit(
                f"error: {args.rows}: {len(lacking)} selected rows have no 'teacher_thought' "
                f"(e.g. {lacking[0]!r}); drop teacher_thought from --conditions or give RL rows "
                "built from thinking rows"
            )
    perm = None
    if "same_arm_swapped_thought" in conditions:
        if len(rows) < 2:
            raise SystemExit("error: same_arm_swapped_thought needs ≥ 2 prefixes (--num-prefixes / --rows)")
        perm = deranged_permutation(len(rows), args.seed)
    config = sampling_config(
        args, judge_description, mode="thought_probe", bank_size=args.bank_size,
        generic_thoughts=list(GENERIC_THOUGHTS),
    )  # fmt: skip
    check_or_write_config(out, config, write=not args.summary_only)
    rows_by_id = {r["id"]: r for r in rows}
    arm_summaries, run_info = {}, {}
    for arm in arms:
        store = SampleStore(out / f"{arm.name}.samples.jsonl")
        info: dict[str, Any] = {"model_dir": str(arm.model_dir)}
        if not args.summary_only:
            if args.rejudge_failed:
                info["rejudged"] = rejudge_failed(store, judge, rows_by_id)
            info["generated"] = probe_arm(arm.name, arm.model_dir, rows, perm, store, judge, args, conditions)
        records = [r for c in conditions for r in store.select(c, rows_by_id)]
        expected = len(rows) * (args.bank_size + args.samples * (len(conditions) - 1))
        info.update(expected_records=expected, records=len(records), complete=len(records) == expected)
        arm_summaries[arm.name], run_info[arm.name] = (
            summarize_probe_arm(records, args.samples, args.bank_size),
            info,
        )
    summary = {
        "arms": arm_summaries,
        "config": config,
        "rows_report": rows_report,
        "prefix_ids": [r["id"] for r in rows],
        "swap_permutation": None
        if perm is None
        else {rows[i]["id"]: rows[p]["id"] for i, p in enumerate(perm)},
        "run": run_info,
        "judge_stats": judge.stats.as_dict(),
        "complete": all(i["complete"] for i in run_info.values()),
    }
    write_summary(out, summary)
    table = render_table(summary)
    (out / "summary.md").write_text(table + "\n")
    print(table)
    print(f"summary: {out / 'summary.json'} (+ summary.md)   samples: {out}/<arm>.samples.jsonl")
    return 0 if summary["complete"] else 3


def _fmt(value: Any) -> str:
    return "—" if value is None else ("nan" if math.isnan(value) else f"{value:.4f}")


def render_table(summary: Mapping[str, Any]) -> str:
    """Reward per condition, deltas and oracle@k per arm, as markdown."""
    lines = ["| arm | " + " | ".join(CONDITIONS) + " |", "|---" * (len(CONDITIONS) + 1) + "|"]
    for arm, s in summary["arms"].items():
        cells = [_fmt(s["conditions"].get(c, {}).get("reward_mean")) for c in CONDITIONS]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| arm | " + " | ".join(f"normal_minus_{c}" for c in CONDITIONS[1:]) + " | oracle@1 | oracle@bank |",
    ]
    lines.append("|---" * (len(CONDITIONS) + 2) + "|")
    for arm, s in summary["arms"].items():
        deltas = [_fmt(s["deltas"].get(f"normal_minus_{c}", {}).get("mean_delta")) for c in CONDITIONS[1:]]
        bank = s["thought_bank"]
        cells = [*deltas, _fmt(bank.get("oracle_at_1")), _fmt(bank.get(f"oracle_at_{bank['bank_size']}"))]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(prog="python -m eval.thought_probe")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return run(parser.parse_args(["thought-probe", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
