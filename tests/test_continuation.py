"""The phase3 stage check: greedy continuations of two models, one pairwise call per prefix, resume."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from fault_server import Fault
from transformers import AutoModelForCausalLM

from eval import continuation
from trl_ext.data.rows import write_rows

TEXTS = [
    "The harbour was quiet in the early morning, and the fishermen were mending their nets by the wall",
    "A thermometer measures temperature by the expansion of a liquid such as mercury inside a thin tube",
    "The committee met on Tuesday to discuss the new budget, which had been delayed by several weeks",
    "Bees communicate the location of flowers to one another through a dance performed inside the dark hive",
    "The novel follows a young woman who leaves her village to study medicine in the capital city",
    "Volcanic soil is often very fertile, which is why farms cluster on the slopes of mountains",
]


@pytest.fixture(scope="module")
def rows_path(tmp_path_factory, qwen_tokenizer):
    rows = []
    for i, text in enumerate(TEXTS):
        ids = qwen_tokenizer(text, add_special_tokens=False)["input_ids"]
        rows.append(
            {
                "id": f"v{i}",
                "prefix_ids": ids[:12],
                "suffix_ids": ids[12:],
                "split": "val",
                "source_sha": f"s{i}",
                "source_id": f"doc{i}",
            }
        )
    path = tmp_path_factory.mktemp("rows") / "examples.jsonl"
    write_rows(path, rows)
    return path


@pytest.fixture(scope="module")
def candidate_dir(tmp_path_factory, tiny_model_dir, qwen_tokenizer):
    """A model different from the base: the tiny model with perturbed weights, saved like a final/ dir."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("candidate") / "final"
    model.save_pretrained(out)
    qwen_tokenizer.save_pretrained(out)
    return out


def _args(tmp_path, rows_path, tiny_model_dir, candidate_dir, **kw):
    parser = argparse.ArgumentParser()
    continuation.add_parser(parser.add_subparsers())
    argv = [
        "continuation",
        "--base",
        str(tiny_model_dir),
        "--candidate",
        str(candidate_dir),
        "--rows",
        str(rows_path),
        "--max-new-tokens",
        "4",
        "--out",
        str(tmp_path / "out"),
        "--batch-size",
        "3",
    ]
    for key, value in kw.items():
        argv += (
            [f"--{key.replace('_', '-')}", str(value)]
            if value is not True
            else [f"--{key.replace('_', '-')}"]
        )
    return parser.parse_args(argv)


def _rows(tmp_path):
    return [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]


def test_offline_judge_report_and_resume(tmp_path, rows_path, tiny_model_dir, candidate_dir):
    args = _args(
        tmp_path,
        rows_path,
        tiny_model_dir,
        candidate_dir,
        judge="likelihood",
        num_prefixes=4,
        judge_scorer=tiny_model_dir,
    )
    assert continuation.run(args) == 0
    first = _rows(tmp_path)
    assert len(first) == 4 and all(r["base_text"] != r["candidate_text"] for r in first)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["candidate_wins"] + summary["base_wins"] == summary["valid"] == 4 - summary["invalid"]
    low, high = summary["win_rate_ci95"]
    assert 0.0 <= low <= summary["win_rate"] <= high <= 1.0

    # resume with more prefixes: the first four are kept, only the new ones are generated and judged
    args = _args(
        tmp_path,
        rows_path,
        tiny_model_dir,
        candidate_dir,
        judge="likelihood",
        num_prefixes=6,
        judge_scorer=tiny_model_dir,
    )
    continuation.run(args)
    second = _rows(tmp_path)
    assert len(second) == 6 and second[:4] == first
    assert len({r["id"] for r in second}) == 6


def test_llm_judge_order_is_randomised(tmp_path, rows_path, tiny_model_dir, candidate_dir, fault_server):
    """A judge that always says Option 1 makes the candidate win exactly when it was shown first; a failed
    call is invalid, never a win for either side."""
    url = fault_server(
        [Fault("http500"), Fault("http500"), Fault("http500"), Fault("ok", text="Conclusion: Option 1")]
    )
    args = _args(
        tmp_path,
        rows_path,
        tiny_model_dir,
        candidate_dir,
        judge="llm",
        judge_base_url=url,
        num_prefixes=6,
        judge_concurrency=1,
    )
    continuation.run(args)
    rows = _rows(tmp_path)
    shown_first = [r["candidate_is_option_1"] for r in rows]
    assert 0 < sum(shown_first) < 6  # the seeded order is mixed
    for r in rows:
        if r["winner"] is not None:
            assert (r["winner"] == "candidate") == r["candidate_is_option_1"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["invalid"] == sum(r["winner"] is None for r in rows)
    assert summary["valid"] >= 5


def test_repetition_rate():
    assert continuation.repetition_4gram_rate(["a b c d a b c d"]) == pytest.approx(1 / 5)
    assert continuation.repetition_4gram_rate(["one two three"]) == 0.0
