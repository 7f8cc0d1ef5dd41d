"""Agreement of our graders with public graders, per source (the table in docs/graders.md).

    python tests/data/graders/agreement.py              # table + every disagreement
    python tests/data/graders/agreement.py --markdown   # the table as it appears in docs/graders.md

A case agrees when our verdict equals the source's ``expected``. Cases where we knowingly differ
are listed in ``disagreements.json`` (case id -> the reason we believe we are right);
tests/test_graders_outside.py fails on any disagreement not listed there, and on any listed one
that no longer happens.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from eval.graders import grade_in_process  # noqa: E402

SOURCES = (
    "math500_reference",
    "gsm8k_reference",
    "gsm8k_model_solutions",
    "qwen25_math_cot",
    "math_verify_tests",
    "lighteval_tests",
    "hendrycks_is_equiv",
    "lm_eval_gsm8k",
)


def load_cases(sources: tuple[str, ...] = SOURCES) -> list[dict]:
    cases = []
    for source in sources:
        path = HERE / f"{source}.jsonl"
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                cases.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: {err}") from err
    return cases


def load_disagreements() -> dict[str, str]:
    return json.loads((HERE / "disagreements.json").read_text(encoding="utf-8"))


def run(cases: list[dict], grader: str = "default") -> list[dict]:
    """Grade every case in-process; each result row has the case id, our verdict and timing."""
    results = []
    for row in cases:
        start = time.perf_counter()
        verdict = grade_in_process(
            row["benchmark"], row["completion"], row["gold"], grader=grader, **row.get("meta", {})
        )
        results.append(
            {
                "id": row["id"],
                "source": row["source"],
                "expected": row["expected"],
                "ours": verdict.correct,
                "extracted": verdict.extracted,
                "error": verdict.error,
                "seconds": time.perf_counter() - start,
            }
        )
    return results


def table(results: list[dict], known: dict[str, str]) -> list[dict]:
    rows = []
    for source in SOURCES:
        mine = [r for r in results if r["source"] == source]
        if not mine:
            continue
        agree = sum(r["ours"] == r["expected"] for r in mine)
        listed = sum(r["ours"] != r["expected"] and r["id"] in known for r in mine)
        rows.append({"source": source, "cases": len(mine), "agree": agree, "known": listed})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--grader", default="default")
    parser.add_argument("--source", nargs="*", default=list(SOURCES))
    args = parser.parse_args()
    known = load_disagreements()
    cases = {c["id"]: c for c in load_cases(tuple(args.source))}
    results = run(list(cases.values()), args.grader)
    rows = table(results, known)
    total: Counter = Counter()
    listed = args.grader == "default"  # disagreements.json is about the default grader
    print("| source | cases | agree | agreement |" + (" listed disagreements |" if listed else ""))
    print("|---|---:|---:|---:|" + ("---:|" if listed else ""))
    for row in rows + [None]:
        if row is None:
            row = {"source": "**all**", **total}
        else:
            total.update({k: v for k, v in row.items() if k != "source"})
        cells = f"| {row['source']} | {row['cases']} | {row['agree']} | {row['agree'] / row['cases']:.1%} |"
        print(cells + (f" {row['known']} |" if listed else ""))
    if args.markdown:
        return
    slowest = max(results, key=lambda r: r["seconds"])
    print(f"\nslowest call: {slowest['seconds']:.2f} s ({slowest['id']})")
    for r in results:
        if r["ours"] != r["expected"]:
            c = cases[r["id"]]
            tag = "KNOWN" if r["id"] in known else "NEW"
            print(
                f"\n[{tag}] {r['id']} expected={r['expected']} ours={r['ours']} extracted={r['extracted']!r} "
                f"error={r['error']}\n  gold={c['gold'][:200]!r}\n  completion={c['completion'][-300:]!r}"
                + (f"\n  reason: {known[r['id']]}" if r["id"] in known else "")
            )


if __name__ == "__main__":
    main()
