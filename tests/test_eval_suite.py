"""The reasoning suite end to end: a real local server, kill-and-resume, injected faults, regrade."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Fault

from eval.__main__ import build_parser, main
from eval.arms import ArmError, checkpoint_dir
from eval.client import SamplingConfig
from eval.results import SAMPLE_SCHEMA, ResumeMismatchError, read_samples
from eval.suite import SuiteConfig, run_suite
from trl_ext.data.rows import read_rows

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
SOURCES = {
    "gsm8k": str(FIXTURES / "gsm8k_test.jsonl"),
    "math500": str(FIXTURES / "math500_test.jsonl"),
    "gpqa_diamond": str(FIXTURES / "gpqa_diamond.csv"),
    "olympiadbench": str(FIXTURES / "olympiadbench_test.jsonl"),
}


def _config(out: Path, **overrides) -> SuiteConfig:
    values = dict(
        arm="base",
        out_dir=out,
        benchmarks=list(SOURCES),
        sources=dict(SOURCES),
        num_samples=2,
        sampling=SamplingConfig(max_tokens=12),
        max_concurrency=8,
        request_timeout_s=60,
        progress=False,
        grader_timeout_s=10,
    )
    values.update(overrides)
    return SuiteConfig(**values)


def test_full_suite_against_real_server(openai_server, tmp_path):
    from eval.report import write_report

    summary = run_suite(
        _config(tmp_path, num_samples=1, sampling=SamplingConfig(max_tokens=8)), [openai_server]
    )
    assert summary["complete"]
    for bench in SOURCES:
        rows = read_rows(tmp_path / "base" / f"{bench}.jsonl", SAMPLE_SCHEMA).rows
        assert len(rows) == 3 and len({r["id"] for r in rows}) == 3
        for row in rows:
            assert row["finish_reason"] in {"stop", "length"}
            assert isinstance(row["completion_tokens"], int) and 0 <= row["completion_tokens"] <= 8
            assert isinstance(row["correct"], bool)
            if bench == "gpqa_diamond":
                assert sorted(row["permutation"]) == [0, 1, 2, 3]
                assert row["gold"] == "ABCD"[row["permutation"].index(0)]
            else:
                assert row["permutation"] is None
        entry = summary["benchmarks"][bench]
        assert entry["num_samples"] == 3 and entry["num_problems"] == 3 and entry["samples_per_problem"] == 1
        assert entry["run"]["generated"] == 3 and entry["run"]["failed"] == 0 and entry["run"]["missing"] == 0
        assert entry["run"]["throughput"]["tokens_per_s"] > 0
    on_disk = json.loads((tmp_path / "base" / "summary.json").read_text())
    assert on_disk["config"]["num_samples"] == 1 and on_disk["benchmarks"]["gsm8k"]["num_samples"] == 3

    # Chat mode against the same real server (the Qwen3 chat template of the embedded tokenizer).
    chat_config = _config(tmp_path, arm="base_chat", benchmarks=["gsm8k"], mode="chat", num_samples=1)
    chat = run_suite(chat_config, [openai_server])
    assert chat["benchmarks"]["gsm8k"]["num_samples"] == 3

    report = write_report(tmp_path)
    assert set(report["arms"]) == {"base", "base_chat"}
    assert (tmp_path / "report.md").read_text().count("| base |") >= 4
    assert {Path(p).name for p in report["plots"]} == {
        "mean_at_k.png",
        "pass_at_k_any.png",
        "per_problem_accuracy.png",
    }
    assert all(Path(p).stat().st_size > 1000 for p in report["plots"])


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_kill_and_resume_exact_accounting(openai_server, tmp_path):
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        "-m",
        "eval",
        "suite",
        "--arm",
        "base",
        "--base-url",
        openai_server,
        "--out",
        str(out),
        "--benchmarks",
        "gsm8k",
        "--source",
        "gsm8k=embedded",
        "--limit",
        "6",
        "--num-samples",
        "3",
        "--max-tokens",
        "8",
        "--concurrency",
        "1",
        "--no-progress",
        "--no-report",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    samples = out / "base" / "gsm8k.jsonl"
    process = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while _count_lines(samples) < 4 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)  # no cleanup at all: a crash
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    before = len(read_samples(samples)) if samples.stat().st_size else 0  # a torn last line is not a row
    assert 4 <= before < 18

    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = read_rows(samples, SAMPLE_SCHEMA).rows  # strict: every line is a complete row
    keys = [(r["id"], r["sample_idx"]) for r in rows]
    assert len(keys) == len(set(keys)) == 18  # nothing duplicated, nothing lost
    assert {k[1] for k in keys} == {0, 1, 2}
    run = json.loads((out / "base" / "summary.json").read_text())["benchmarks"]["gsm8k"]["run"]
    assert run["resumed"] == before and run["generated"] == 18 - before and run["missing"] == 0


def test_injected_faults_are_retried_and_counted(fault_server, tmp_path):
    script = [
        Fault("http500"),
        Fault("timeout", delay_s=1.5),
        Fault("garbage"),
        Fault("truncated_json"),
        Fault("ok", text=r"so the answer is \boxed{19}"),
    ]
    url = fault_server(script)
    config = _config(
        tmp_path,
        benchmarks=["gsm8k"],
        num_samples=1,
        max_concurrency=1,
        request_timeout_s=0.5,
        max_retries=4,
        retry_backoff_s=0.05,
    )
    summary = run_suite(config, [url])
    entry = summary["benchmarks"]["gsm8k"]
    assert summary["complete"] and entry["num_samples"] == 3 and entry["run"]["failed"] == 0
    # The first sample needed 5 attempts (500, timeout, garbage, truncated JSON, ok); the rest one each.
    rows = sorted(read_samples(tmp_path / "base" / "gsm8k.jsonl"), key=lambda r: r["attempts"], reverse=True)
    assert [r["attempts"] for r in rows] == [5, 1, 1]
    assert [r["correct"] for r in sorted(rows, key=lambda r: r["id"])] == [
        True,
        False,
        False,
    ]  # gold 19, 6, 1550


def test_failures_are_recorded_and_retried_on_resume(fault_server, tmp_path):
    config = _config(tmp_path, benchmarks=["math500"], num_samples=2, max_retries=1)
    broken = fault_server([Fault("http500")])
    summary = run_suite(config, [broken])
    entry = summary["benchmarks"]["math500"]
    assert (
        not summary["complete"] and entry["run"]["failed"] == 6 and entry["unresolved_request_failures"] == 6
    )
    assert _count_lines(tmp_path / "base" / "math500.failures.jsonl") == 6

    healthy = fault_server([Fault("ok", text=r"\boxed{4}")])
    summary = run_suite(config, [healthy])
    entry = summary["benchmarks"]["math500"]
    assert summary["complete"] and entry["run"]["resumed"] == 0 and entry["run"]["generated"] == 6
    assert entry["unresolved_request_failures"] == 0
    assert entry["correct"] == 2  # "4" is the gold of one of the three problems, for both samples


def test_resume_refuses_a_different_prompt_or_sampling(fault_server, tmp_path):
    url = fault_server([Fault("ok", text="Answer: A")])
    run_suite(_config(tmp_path, benchmarks=["gpqa_diamond"], num_samples=1), [url])
    with pytest.raises(ResumeMismatchError, match="different prompt"):
        run_suite(_config(tmp_path, benchmarks=["gpqa_diamond"], num_samples=1, seed=99), [url])
    with pytest.raises(ResumeMismatchError, match="max_tokens"):
        run_suite(
            _config(
                tmp_path, benchmarks=["gpqa_diamond"], num_samples=1, sampling=SamplingConfig(max_tokens=5)
            ),
            [url],
        )
    # More samples per problem with the same settings is a valid continuation (k grows from 1 to 2).
    summary = run_suite(_config(tmp_path, benchmarks=["gpqa_diamond"], num_samples=2), [url])
    assert summary["benchmarks"]["gpqa_diamond"]["run"]["resumed"] == 3
    assert summary["benchmarks"]["gpqa_diamond"]["samples_per_problem"] == 2


def test_regrade_and_report_cli(fault_server, tmp_path, capsys):
    url = fault_server([Fault("ok", text=r"The answer is \boxed{6}.")])
    run_suite(_config(tmp_path, benchmarks=["gsm8k"], num_samples=2), [url])
    path = tmp_path / "base" / "gsm8k.jsonl"
    rows = read_samples(path)
    assert sum(r["correct"] for r in rows) == 2
    # Simulate rows scored by an older, buggy grader: everything marked wrong.
    path.write_text("".join(json.dumps(dict(r, correct=False)) + "\n" for r in rows))
    assert main(["regrade", "--out", str(tmp_path), "--dry-run"]) == 0
    assert '"flipped_to_correct": 2' in capsys.readouterr().out
    assert sum(r["correct"] for r in read_samples(path)) == 0  # dry run wrote nothing
    assert main(["regrade", "--out", str(tmp_path), "--grader-workers", "1"]) == 0
    assert sum(r["correct"] for r in read_samples(path)) == 2
    assert (tmp_path / "report.md").exists()

    run_suite(_config(tmp_path, arm="think_base", benchmarks=["gsm8k"], num_samples=2), [url])
    assert main(["report", "--out", str(tmp_path), "--compare", "think_base:base", "--no-plots"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "Base+Think vs Base" in text and "| Macro |" in text


def test_cli_has_every_subcommand():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"serve", "suite", "regrade", "report"} <= set(commands)


def test_arm_resolution(tmp_path, tiny_model_dir):
    assert checkpoint_dir("base") == tiny_model_dir
    with pytest.raises(ArmError, match="accelerate launch recipes/sft_think_base.py"):
        checkpoint_dir("think_base", tmp_path)
    (tmp_path / "think_base" / "checkpoint-5").mkdir(parents=True)
    (tmp_path / "think_base" / "checkpoint-5" / "config.json").write_text("{}")
    (tmp_path / "think_base" / "checkpoint-12").mkdir()
    (tmp_path / "think_base" / "checkpoint-12" / "config.json").write_text("{}")
    assert checkpoint_dir("think_base", tmp_path).name == "checkpoint-12"
    (tmp_path / "think_base" / "final").mkdir()
    (tmp_path / "think_base" / "final" / "config.json").write_text("{}")
    assert checkpoint_dir("think_base", tmp_path).name == "final"


@pytest.mark.slow
def test_peft_adapter_arm_is_merged_and_exported(tmp_path, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = get_peft_model(
        model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    final = tmp_path / "think_base" / "final"
    peft_model.save_pretrained(final)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(final)
    exported = checkpoint_dir("think_base", tmp_path)
    assert exported == tmp_path / "think_base" / "export"
    assert (exported / "config.json").is_file() and (exported / "tokenizer_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], base.state_dict()[name])  # the LoRA delta is in
    assert checkpoint_dir("think_base", tmp_path) == exported  # exported once, then reused


def test_cli_errors_name_what_to_fix(tmp_path, capsys):
    assert (
        main(["suite", "--arm", "think_base", "--outputs", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    )
    assert "accelerate launch recipes/sft_think_base.py" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    args = ["suite", "--arm", "base", "--out", str(tmp_path / "e"), "--source", f"gsm8k={bad}"]
    assert main(args) == 2
    assert f"{bad}:1: field 'answer' missing" in capsys.readouterr().err
