"""Grader throughput (items/s) per benchmark: in-process versus the killable worker pool.

The pool is what the suite uses (every call under a hard wall-clock limit); the in-process
number shows what that safety costs. Completions are realistic shapes (a few sentences of
reasoning then a boxed answer or an ``Answer:`` line), half correct, half near misses.

    python bench/bench_graders.py                 # 200 items per benchmark, pools of 1 and 2 workers
    python bench/bench_graders.py --items 1000 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eval.graders import GraderPool, grade_in_process  # noqa: E402

REASONING = (
    "First we compute the intermediate quantity, then simplify. Checking the units, it is consistent. "
)
ITEMS = {
    "gsm8k": [
        (REASONING * 3 + f"The answer is {n}.", str(n if i % 2 else n + 1), {})
        for i, n in enumerate(range(50))
    ],
    "math500": [
        (
            REASONING * 3 + rf"Therefore \boxed{{\frac{{{n}}}{{{n + 1}}}}}.",
            rf"\frac{{{2 * n}}}{{{2 * n + 2 + i % 2}}}",
            {},
        )
        for i, n in enumerate(range(1, 51))
    ],
    "gpqa_diamond": [
        (REASONING * 3 + f"Answer: {'ABCD'[i % 4]}", "ABCD"[(i + i % 2) % 4], {}) for i in range(50)
    ],
    "olympiadbench": [
        (
            REASONING * 3 + rf"So \boxed{{{n + 1}, {n}}}.",
            f"${n}, {n + 1 + i % 2}$",
            {"is_multiple_answer": True},
        )
        for i, n in enumerate(range(50))
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="items per benchmark")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rows = []
    for bench, base in ITEMS.items():
        items = [base[i % len(base)] for i in range(args.items)]
        grade_in_process(bench, *items[0][:2], **items[0][2])  # imports (SymPy) outside the timing
        start = time.perf_counter()
        plain = [grade_in_process(bench, c, g, **m) for c, g, m in items]
        row = {"benchmark": bench, "in-process": args.items / (time.perf_counter() - start)}
        for workers in args.workers:
            with GraderPool(workers=workers, timeout_s=10) as pool:
                pool.grade_many([(bench, *items[0][:2], items[0][2])] * workers)  # start the workers
                start = time.perf_counter()
                pooled = pool.grade_many((bench, c, g, m) for c, g, m in items)
                row[f"pool x{workers}"] = args.items / (time.perf_counter() - start)
                assert [p.correct for p in pooled] == [p.correct for p in plain], (
                    "pool and in-process disagree"
                )
        row["accuracy"] = sum(p.correct for p in plain) / len(plain)
        rows.append(row)
    cols = ["in-process"] + [f"pool x{w}" for w in args.workers]
    print(f"\nitems/s, {args.items} items per benchmark (same verdicts in every column)\n")
    print("| benchmark | " + " | ".join(cols) + " | fraction correct |")
    print("|---|" + "---|" * (len(cols) + 1))
    for row in rows:
        print(
            f"| {row['benchmark']} | "
            + " | ".join(f"{row[c]:.0f}" for c in cols)
            + f" | {row['accuracy']:.2f} |"
        )


if __name__ == "__main__":
    main()
