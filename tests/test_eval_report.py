"""Reports reproduce the reference run's reasoning tables (docs/reference_results.md) from per-sample rows."""

from __future__ import annotations

import json

from eval.report import render_markdown, write_report
from trl_ext.data.rows import write_rows


def _arm_rows(arm: str, problems: int, k: int, correct: int, solved: int, tokens: int) -> list[dict]:
    """Rows with exactly ``correct`` correct samples spread over exactly ``solved`` problems."""
    per_problem = [0] * problems
    for i in range(solved):
        per_problem[i] = 1
    remaining = correct - solved
    i = 0
    while remaining:
        if per_problem[i % solved] < k:
            per_problem[i % solved] += 1
            remaining -= 1
        i += 1
    rows = []
    for p, c in enumerate(per_problem):
        for s in range(k):
            rows.append(
                {
                    "arm": arm,
                    "benchmark": "gsm8k",
                    "id": f"gsm8k-test-{p}",
                    "sample_idx": s,
                    "prompt_hash": "0" * 16,
                    "completion": "...",
                    "extracted": "1",
                    "gold": "1",
                    "correct": s < c,
                    "completion_tokens": tokens,
                    "finish_reason": "stop",
                    "permutation": None,
                    "grade_error": None,
                }
            )
    return rows


def test_seed_gsm8k_rows_reproduce_the_seed_tables(tmp_path):
    # docs/reference_results.md: think_base GSM8K 1113/10552 correct, 671/1319 solved; think_phase3 1091, 676.
    write_rows(tmp_path / "think_base" / "gsm8k.jsonl", _arm_rows("think_base", 1319, 8, 1113, 671, 322))
    write_rows(tmp_path / "think_phase3" / "gsm8k.jsonl", _arm_rows("think_phase3", 1319, 8, 1091, 676, 321))
    report = write_report(tmp_path, plots=False)
    text = render_markdown(report)
    assert "| think_base | GSM8K | 0.105478 | 1113 / 10552 |" in text
    assert "| 0.508719 | 671 / 1319 |" in text
    assert "| think_phase3 | GSM8K | 0.103393 | 1091 / 10552 |" in text
    assert "| Phase3+Think vs Base+Think | GSM8K | -0.002085 | +0.003791 | -1.0 |" in text
    assert "| Phase3+Think vs Base+Think | Macro | -0.002085 | +0.003791 | -1.0 |" in text
    assert "| think_base | 0.105478 | 0.508719 | 322.0 |" in text  # macro row (one benchmark)
    data = json.loads((tmp_path / "report.json").read_text())
    assert (
        data["scores"]["think_base"]["gsm8k"]["pass_at"]["8"]
        == data["scores"]["think_base"]["gsm8k"]["pass_at_k_any"]
    )
    assert (tmp_path / "report.md").read_text() == text


def test_discover_ignores_other_eval_outputs(tmp_path):
    """The continuation check, reward gate and probe write JSONL under the same eval folder."""
    from eval.results import discover

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "gsm8k.jsonl").write_text("{}\n")
    (tmp_path / "base" / "gsm8k.failures.jsonl").write_text("{}\n")
    (tmp_path / "continuation").mkdir()
    (tmp_path / "continuation" / "samples.jsonl").write_text('{"not": "a sample"}\n')
    assert discover(tmp_path) == {"base": {"gsm8k": tmp_path / "base" / "gsm8k.jsonl"}}
