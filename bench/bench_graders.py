"""Grader throughput (items/s) per benchmark and grader: in-process versus the killable worker pool.

The pool is what the suite uses (every call under a hard wall-clock limit); the in-process
number shows what that safety costs. Items mimic a run: ``--problems`` problems with ``--k``
samples each, completions of a few sentences of reasoning then a boxed answer or an
``Answer:`` line, alternating a correct answer (in varying forms) and a near miss. A second table
grades real text: the MATH-500 reference solutions and GSM8K model solutions of the outside test
set (tests/data/graders). The slowest single call is reported: it must stay far below the
pool's hard limit (10 s by default).

    python bench/bench_graders.py                        # 50 problems x 8 samples, pool of 1 and 2
    python bench/bench_graders.py --problems 200 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eval.graders import GRADERS, GraderPool, grade_in_process  # noqa: E402
from eval.graders.math import clear_caches  # noqa: E402

REASONING = (
    "First we compute the intermediate quantity, then simplify. Checking the units, it is consistent. "
)
OUTSIDE = REPO / "tests" / "data" / "graders"


def synthetic(benchmark: str, problems: int, k: int) -> list[tuple[str, str, dict]]:
    """``problems`` x ``k`` items; sample ``j`` of problem ``n`` is right when ``j`` is even."""
    items = []
    for n in range(1, problems + 1):
        for j in range(k):
            right, form = j % 2 == 0, j // 2
            if benchmark == "gsm8k":
                value = 12 * n if right else 12 * n + 1
                answer = [f"The answer is {value}.", rf"\boxed{{{value}}}", f"#### {value:,}"][form % 3]
                items.append((REASONING * 3 + answer, str(12 * n), {}))
            elif benchmark == "math500":
                num, den = (2 * n, 2 * n + 2) if right else (n, n + 2)
                answer = [
                    rf"\frac{{{n}}}{{{n + 1}}}",
                    rf"\frac{{{num}}}{{{den}}}",
                    rf"\dfrac{{{n}}}{{{n + 1}}}",
                ]
                items.append(
                    (
                        REASONING * 3 + rf"Therefore \boxed{{{answer[form % 3] if right else answer[1]}}}.",
                        rf"\frac{{{n}}}{{{n + 1}}}",
                        {},
                    )
                )
            elif benchmark == "gpqa_diamond":
                gold = "ABCD"[n % 4]
                letter = gold if right else "ABCD"[(n + 1) % 4]
                answer = [f"Answer: {letter}", f"Answer: ${letter}$", rf"\boxed{{{letter}}}"][form % 3]
                items.append((REASONING * 3 + answer, gold, {}))
            else:
                pair = f"{n + 1}, {n}" if right else f"{n + 1}, {n + 2}"
                items.append(
                    (
                        REASONING * 3 + rf"So \boxed{{{pair}}}.",
                        f"${n}, {n + 1}$",
                        {"is_multiple_answer": True},
                    )
                )
    return items


def outside(source: str, benchmark: str) -> list[tuple[str, str, dict]]:
    rows = [json.loads(line) for line in (OUTSIDE / f"{source}.jsonl").read_text().splitlines()]
    return [(r["completion"], r["gold"], r.get("meta", {})) for r in rows if r["benchmark"] == benchmark]


def measure(benchmark: str, items: list, grader: str, workers: list[int]) -> dict:
    grade_in_process(benchmark, *items[0][:2], grader=grader, **items[0][2])  # imports outside the timing
    clear_caches()  # parses are cached per process: time every column from cold
    slowest, plain = 0.0, []
    start = time.perf_counter()
    for c, g, m in items:
        t = time.perf_counter()
        plain.append(grade_in_process(benchmark, c, g, grader=grader, **m))
        slowest = max(slowest, time.perf_counter() - t)
    row = {"in-process": len(items) / (time.perf_counter() - start), "slowest call s": slowest}
    for n in workers:
        clear_caches()  # workers are forked from this process and would inherit its cache
        with GraderPool(workers=n, timeout_s=10) as pool:
            pool.grade_many([(benchmark, "", items[0][1], items[0][2])] * n, grader)  # start the workers
            start = time.perf_counter()
            pooled = pool.grade_many(((benchmark, c, g, m) for c, g, m in items), grader)
            row[f"pool x{n}"] = len(items) / (time.perf_counter() - start)
            assert [p.correct for p in pooled] == [p.correct for p in plain], "pool and in-process disagree"
    row["fraction correct"] = sum(p.correct for p in plain) / len(plain)
    return row


def print_table(title: str, rows: list[tuple[str, dict]], workers: list[int]) -> None:
    cols = ["in-process"] + [f"pool x{w}" for w in workers]
    print(f"\n{title}\n")
    print("| items | " + " | ".join(f"{c} items/s" for c in cols) + " | slowest call s | fraction correct |")
    print("|---|" + "---:|" * (len(cols) + 2))
    for name, row in rows:
        cells = " | ".join(f"{row[c]:.0f}" for c in cols)
        print(f"| {name} | {cells} | {row['slowest call s']:.3f} | {row['fraction correct']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=50, help="problems per benchmark")
    parser.add_argument("--k", type=int, default=8, help="samples per problem")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--graders", nargs="+", default=list(GRADERS), choices=list(GRADERS))
    args = parser.parse_args()
    rows = []
    for grader in args.graders:
        for benchmark in GRADERS[grader]:
            items = synthetic(benchmark, args.problems, args.k)
            rows.append((f"{benchmark} / {grader}", measure(benchmark, items, grader, args.workers)))
    print_table(
        f"Synthetic: {args.problems} problems x {args.k} samples each (same verdicts in every column)",
        rows,
        args.workers,
    )
    real = [
        ("MATH-500 reference solutions", "math500_reference", "math500"),
        ("GSM8K model solutions", "gsm8k_model_solutions", "gsm8k"),
    ]
    rows = [
        (name, measure(bench, outside(source, bench), "default", args.workers))
        for name, source, bench in real
    ]
    print_table(
        "Real text from the outside test set, default grader (each item distinct)", rows, args.workers
    )


if __name__ == "__main__":
    main()
