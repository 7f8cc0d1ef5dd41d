"""Our graders against public graders' own cases (tests/data/graders, sources in SOURCES.md).

Each case carries the verdict of the source's grader or test suite. We must agree with every case
except those listed in disagreements.json, each with the reason we believe we are right; a new
disagreement fails, and so does a listed one that no longer happens (keep the list exact).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from eval.graders import BENCHMARKS

DATA = Path(__file__).parent / "data" / "graders"
sys.path.insert(0, str(DATA))

from agreement import SOURCES, load_cases, load_disagreements, run  # noqa: E402

HARD_LIMIT_S = 15.0  # no single grading call may come near the worker's kill limit
SLOW_SOURCES = {"math500_reference", "qwen25_math_cot", "math_verify_tests"}  # SymPy-heavy


def test_cases_are_well_formed_and_sourced():
    cases = load_cases()
    ids = Counter(c["id"] for c in cases)
    assert not [i for i, n in ids.items() if n > 1], "case ids must be unique"
    for case in cases:
        assert case["benchmark"] in BENCHMARKS, case["id"]
        assert isinstance(case["expected"], bool), case["id"]
        assert case["source"] in SOURCES and case["id"].startswith(case["source"] + ":"), case["id"]
        assert isinstance(case["completion"], str) and isinstance(case["gold"], str) and case["note"]
    assert len(cases) >= 1500
    unknown = set(load_disagreements()) - set(ids)
    assert not unknown, f"disagreements.json lists cases that do not exist: {sorted(unknown)}"
    sources_md = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    for source in SOURCES:
        assert f"`{source}.jsonl`" in sources_md, f"SOURCES.md does not describe {source}.jsonl"


def _check_source(source: str) -> list[dict]:
    known = load_disagreements()
    results = run(load_cases((source,)))
    disagree = {r["id"] for r in results if r["ours"] != r["expected"]}
    listed = {i for i in known if i.startswith(source + ":")}
    new = sorted(disagree - listed)
    assert not new, f"new disagreements with {source} (fix the grader or list them with a reason): {new}"
    gone = sorted(listed - disagree)
    assert not gone, f"listed disagreements that no longer happen (remove them): {gone}"
    slowest = max(results, key=lambda r: r["seconds"])
    assert slowest["seconds"] < HARD_LIMIT_S, slowest
    assert not [r for r in results if r["error"]], "no grader errors on real cases"
    return results


@pytest.mark.parametrize("source", [s for s in SOURCES if s not in SLOW_SOURCES])
def test_agreement(source):
    _check_source(source)


@pytest.mark.slow
@pytest.mark.parametrize("source", sorted(SLOW_SOURCES))
def test_agreement_slow_sources(source):
    _check_source(source)


@pytest.mark.slow
def test_every_math500_reference_solution_is_correct():
    results = _check_source("math500_reference")
    assert len(results) == 500 and all(r["ours"] for r in results)


def test_math500_golds_all_parse():
    """3 MATH-500 golds (``\\$32,\\!348``, ``\\$18.90``, ``\\$36``) used to be "gold unparsable"."""
    from eval.graders.math import parse_gold

    golds = [c["gold"] for c in load_cases(("math500_reference",))]
    assert len(golds) == 500
    assert [g for g in golds if not parse_gold(g)] == []


def test_reasons_are_written_out():
    for case_id, reason in load_disagreements().items():
        assert len(reason.split()) >= 8, f"{case_id}: say why we believe we are right"
