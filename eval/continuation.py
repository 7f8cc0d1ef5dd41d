"""Stage check for phase3 (docs/method.md §2): held-out pairwise continuation quality, candidate vs base.

``python -m eval continuation --base base --candidate phase3`` (arm names or model directories): both
models greedy-decode 128 tokens on 128 held-out prefixes; for each prefix one pairwise judge call sees the
prefix and the two continuations in a seeded random order; the report is wins / valid judgements with a 95%
Wilson interval (the reference run's figure: phase3 beat base on 81/128 = 63.28%).

* ``<out>/samples.jsonl`` — one row per prefix (both continuations, the order shown, the verdict, the raw
  reply), appended as it is judged: a killed run resumes where it stopped and never judges a prefix twice.
* ``<out>/summary.json`` — recomputed from the rows every run: wins, losses, invalid, win rate and interval,
  plus each model's 4-gram repetition rate over its continuations.

Judges: ``--judge llm --judge-base-url URL`` (the pairwise quality prompt over an OpenAI-compatible server,
as in the reference run) or ``--judge likelihood`` (offline, CPU: a frozen scorer LM).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_OUT = "outputs/eval/continuation"
SAMPLE_FIELDS = {
    "id": str,
    "prefix_text": str,
    "base_text": str,
    "candidate_text": str,
    "candidate_is_option_1": bool,
    "winner": str,
    "raw": str,
    "error": str,
}


def _schema():
    from trl_ext.data.rows import RowSchema

    return RowSchema(
        name="continuation sample",
        fields={
            k: SAMPLE_FIELDS[k]
            for k in ("id", "prefix_text", "base_text", "candidate_text", "candidate_is_option_1")
        },
        optional={"winner": str | None, "raw": str | None, "error": str | None},
    )


def repetition_4gram_rate(texts: Sequence[str]) -> float:
    """Σ repeated 4-grams / Σ 4-grams over texts (whitespace words): how loopy the generations are."""
    repeated = total = 0
    for text in texts:
        words = text.split()
        grams = [tuple(words[k : k + 4]) for k in range(len(words) - 3)]
        total += len(grams)
        repeated += len(grams) - len(set(grams))
    return repeated / total if total else 0.0


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Wins / valid and its interval, from the per-prefix rows alone."""
    from eval.metrics import wilson_interval

    wins = sum(r.get("winner") == "candidate" for r in rows)
    losses = sum(r.get("winner") == "base" for r in rows)
    valid = wins + losses
    low, high = wilson_interval(wins, valid) if valid else (None, None)
    return {
        "prefixes": len(rows),
        "valid": valid,
        "invalid": len(rows) - valid,
        "candidate_wins": wins,
        "base_wins": losses,
        "win_rate": wins / valid if valid else None,
        "win_rate_ci95": [low, high],
        "identical_continuations": sum(r["base_text"] == r["candidate_text"] for r in rows),
        "invalid_rate": (len(rows) - valid) / len(rows) if rows else None,
        "candidate_shown_first_rate": sum(r["candidate_is_option_1"] for r in rows) / len(rows)
        if rows
        else None,
        "repetition_4gram_rate_base": repetition_4gram_rate([r["base_text"] for r in rows]),
        "repetition_4gram_rate_candidate": repetition_4gram_rate([r["candidate_text"] for r in rows]),
    }


def load_prefixes(path: str | Path, split: str, num_prefixes: int, seed: int) -> list[dict]:
    """``num_prefixes`` rows of ``split`` drawn with ``seed`` (stable: the same rows on every resume)."""
    from trl_ext.data.chunking import PREFIX_SUFFIX_SCHEMA
    from trl_ext.data.rows import read_rows

    rows = [r for r in read_rows(path, PREFIX_SUFFIX_SCHEMA).rows if r["split"] == split]
    if not rows:
        raise SystemExit(f"error: --rows {path}: no rows with split={split!r}")
    rows.sort(key=lambda r: r["id"])
    random.Random(seed).shuffle(rows)
    return rows[:num_prefixes]


def greedy_continuations(
    model_dir: Path, prefixes: list[list[int]], max_new_tokens: int, stop_at_eos: bool, batch_size: int
) -> list[str]:
    """Greedy decoding, exactly ``max_new_tokens`` tokens unless ``stop_at_eos`` (reference: exactly 128)."""
    import torch

    from eval.thought_rollouts import load_model
    from trl_ext.rollout import left_pad, resolve_eos_token_ids

    model, tok = load_model(model_dir)
    eos = resolve_eos_token_ids(model, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
    device = next(model.parameters()).device
    texts: list[str] = []
    for start in range(0, len(prefixes), batch_size):
        ids, att = left_pad(prefixes[start : start + batch_size], pad, device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=att,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                min_new_tokens=None if stop_at_eos else max_new_tokens,
                eos_token_id=eos,
                pad_token_id=pad,
                use_cache=True,
            )[:, ids.size(1) :].tolist()
        for row in out:
            if stop_at_eos:
                row = next((row[: k + 1] for k, t in enumerate(row) if t in eos), row)
            texts.append(tok.decode(row, skip_special_tokens=True))
    del model
    return texts


def build_judge(args: argparse.Namespace):
    from trl_ext.judges.pairwise import LikelihoodPairwiseJudge, LLMPairwiseJudge

    if args.judge == "llm":
        if not args.judge_base_url:
            raise SystemExit("error: --judge llm needs --judge-base-url (repeatable)")
        return LLMPairwiseJudge(
            base_url=args.judge_base_url,
            prompt=args.judge_prompt,
            model=args.judge_model,
            max_concurrency=args.judge_concurrency,
            max_tokens=args.judge_max_tokens,
            invalid_log_path=Path(args.out) / "judge_invalid.jsonl",
        )
    if not args.judge_scorer:
        raise SystemExit(
            "error: --judge likelihood needs --judge-scorer (an arm or model dir). A scorer that is one of "
            "the two compared models favours its own greedy outputs; prefer a third, stronger model."
        )
    scorer = resolve_model(args.judge_scorer, args.outputs, args.base_model)
    return LikelihoodPairwiseJudge(str(scorer), criterion=args.judge_criterion)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "continuation",
        help="docs/method.md §2 stage check: pairwise continuation win rate, candidate vs base",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--base", default="base", help="arm name or model directory of the reference model")
    parser.add_argument("--candidate", default="phase3", help="arm name or model directory being checked")
    parser.add_argument("--outputs", default="outputs", help="root of the arms' training outputs")
    parser.add_argument("--base-model", help="model for arm 'base' (default: the embedded tiny Qwen3)")
    parser.add_argument("--rows", default="outputs/data/examples.jsonl", help="prefix/suffix rows")
    parser.add_argument("--split", default="val", help="held-out split to draw prefixes from")
    parser.add_argument("--num-prefixes", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--stop-at-eos", action="store_true", help="let generations end at EOS (default: exact)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="prefixes per generate call")
    parser.add_argument("--seed", type=int, default=3337, help="prefix draw and A/B order")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--overwrite", action="store_true", help="discard earlier samples in --out")
    judge = parser.add_argument_group("judge")
    judge.add_argument("--judge", choices=["llm", "likelihood"], default="llm")
    judge.add_argument("--judge-base-url", action="append", help="judge server URL (repeatable)")
    judge.add_argument("--judge-model", default="default")
    judge.add_argument("--judge-prompt", default="pairwise_quality")
    judge.add_argument("--judge-max-tokens", type=int, default=256)
    judge.add_argument("--judge-concurrency", type=int, default=32)
    judge.add_argument(
        "--judge-scorer", help="scorer for --judge likelihood: an arm name or model dir (required)"
    )
    judge.add_argument("--judge-criterion", choices=["pmi", "loglik"], default="pmi")
    parser.set_defaults(func=run)
    return parser


def resolve_model(spec: str, outputs: str, base_model: str | None) -> Path:
    path = Path(spec)
    if (path / "config.json").is_file():
        return path
    from eval.arms import checkpoint_dir

    try:
        return checkpoint_dir(spec, outputs, base_model)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None


def run(args: argparse.Namespace) -> int:
    from trl_ext.data.rows import append_row, read_appended_rows

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "samples.jsonl"
    if args.overwrite:
        samples_path.unlink(missing_ok=True)
    args.base_dir = resolve_model(args.base, args.outputs, args.base_model)
    args.candidate_dir = resolve_model(args.candidate, args.outputs, args.base_model)
    judge = build_judge(args)  # before any generation: a bad judge flag fails fast
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}
    done = {r["id"]: r for r in read_appended_rows(samples_path, _schema())} if samples_path.exists() else {}
    rows = load_prefixes(args.rows, args.split, args.num_prefixes, args.seed)
    todo = [r for r in rows if r["id"] not in done]
    logger.info("continuation check: %d prefixes, %d already judged", len(rows), len(rows) - len(todo))
    if todo:
        prefixes = [r["prefix_ids"] for r in todo]
        base_texts = greedy_continuations(
            args.base_dir, prefixes, args.max_new_tokens, args.stop_at_eos, args.batch_size
        )
        cand_texts = greedy_continuations(
            args.candidate_dir, prefixes, args.max_new_tokens, args.stop_at_eos, args.batch_size
        )
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.base_dir)
        prefix_texts = tok.batch_decode(prefixes, skip_special_tokens=True)
        first = [
            random.Random(f"{args.seed}:{r['id']}").random() < 0.5 for r in todo
        ]  # candidate shown first?
        option_1 = [c if f else b for c, b, f in zip(cand_texts, base_texts, first)]
        option_2 = [b if f else c for c, b, f in zip(cand_texts, base_texts, first)]
        verdicts = judge.judge_pairs(prefix_texts, option_1, option_2)
        for r, p, b, c, f, v in zip(todo, prefix_texts, base_texts, cand_texts, first, verdicts):
            winner = None if v.score is None else ("candidate" if (int(v.score) == 1) == f else "base")
            row = {
                "id": r["id"],
                "prefix_text": p,
                "base_text": b,
                "candidate_text": c,
                "candidate_is_option_1": f,
                "winner": winner,
                "raw": v.raw,
                "error": v.error,
            }
            append_row(samples_path, row)
            done[r["id"]] = row
    wanted = [done[r["id"]] for r in rows if r["id"] in done]
    summary = {
        "base": str(args.base_dir),
        "candidate": str(args.candidate_dir),
        **summarize(wanted),
        "config": config,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rate = summary["win_rate"]
    low, high = summary["win_rate_ci95"]
    print(
        f"| candidate | base | wins / valid | win rate | 95% CI | invalid |\n|---|---|---:|---:|---:|---:|\n"
        f"| {args.candidate} | {args.base} | {summary['candidate_wins']} / {summary['valid']} | "
        f"{'n/a' if rate is None else f'{rate:.2%}'} | "
        f"{'n/a' if rate is None else f'[{low:.2%}, {high:.2%}]'} | {summary['invalid']} |"
    )
    print(f"wrote {samples_path} and {out / 'summary.json'}")
    return 0
