"""The results page renders the seed's tables from the files the real writers produce.

Every input below is written by the project's own writer code (``MetricsJsonCallback`` with the
SFT/RLMT summary columns, the reward-gate / probe / continuation aggregation functions, the eval
sample store), so a change of format on the writing side breaks these tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO_ROOT

from eval import reward_gate, thought_probe
from eval.__main__ import main as eval_main
from eval.continuation import summarize as summarize_continuation
from eval.results import SampleStore
from eval.results_page import render_page
from eval.thought_rollouts import sample_row, write_summary
from trl_ext.callbacks import MetricsJsonCallback
from trl_ext.data.rows import RowFileError, append_row

TINY = "/cache/trl_ext/tiny-qwen3"  # the embedded model's directory name marks a pipeline check
CLOSE_ID = 151668


def write_metrics(out: Path, summary: dict, extra: dict, history: list[dict], finished: bool = True) -> Path:
    """metrics.json exactly as a training run writes it: logged records through the callback."""
    callback = MetricsJsonCallback(out, summary=summary, extra=extra)
    for step, logs in enumerate(history, start=1):
        callback.on_log(None, SimpleNamespace(global_step=step), None, logs=dict(logs))
    out.mkdir(parents=True, exist_ok=True)
    callback.write(SimpleNamespace(global_step=len(history)), finished=finished)
    return out / "metrics.json"


def sft_summary() -> dict:
    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    from sft_common import seed_table_summary

    return seed_table_summary()


def write_sft(outputs: Path, arm: str, val_loss: float, raw: float, thought_nll: float, start: str = TINY):
    history = [
        {"thought_nll": 9.0, "val_loss": 11.0, "sft_eval_seconds": 5.0},
        {"loss": 3.0, "tokens_seen": 2_000_000, "available_mem_gib": 70.25},
        {"loss": 2.9, "tokens_seen": 4_035_285, "available_mem_gib": 69.78},
        {"train_runtime": 1005.0},
        {
            "val_loss": val_loss,
            "val_loss_raw": raw,
            "val_loss_selected": val_loss,
            "repetition_4gram_rate": 0.019397,
            "thought_nll": thought_nll,
            "sft_eval_seconds": 5.0,
        },
    ]
    extra = {
        "arm": arm,
        "checkpoint": str(outputs / arm / "final"),
        "start_model": start,
        "train_rows": 1200,
        "script_args": {"train_rows": "outputs/data/thinking/sft.jsonl", "model_name_or_path": start},
    }
    return write_metrics(outputs / arm, sft_summary(), extra, history)


def write_rlmt(outputs: Path, arm: str, rewards: list[float], start: str):
    from trl_ext.trainers.grpo import RLMT_TABLE_COLUMNS, _summarise

    summary = {col: _summarise(kind, key) for col, (kind, key) in RLMT_TABLE_COLUMNS.items()}
    history = [
        {
            "reward_mean": r,
            "mixed_group_rate": 0.5,
            "near_zero_group_rate": 0.5,
            "all_zero_group_rate": 0.5,
            "all_one_group_rate": 0.0,
            "invalid_judge_rate": 0.0,
            "length_drift": -0.0005,
            "artifact_rate": 0.125,
            "avg_total_new_tokens": 170.0,
            "min_available_mem_gib": 60.0,
        }
        for r in rewards
    ]
    extra = {
        "stopped_reason": None,
        "arm": arm,
        "final_checkpoint": str(outputs / arm / "final"),
        "start_model": start,
        "rl_rows": 64,
        "judge": "offline",
        "script_args": {"rl_rows": "outputs/data/rl/rl_rows.jsonl"},
    }
    return write_metrics(outputs / arm, summary, extra, history)


def write_phase3(outputs: Path):
    from trl_ext.trainers.online_dpo import phase3_summary_columns

    summary = phase3_summary_columns()  # the columns SelfImprovingOnlineDPOTrainer registers
    history = [
        {"chosen_is_rollout_rate": 0.5, "rollout_pointwise_mean": 0.25, "pivot_pointwise_mean": 0.75,
         "judge_invalid_rate": 0.0, "tokens_seen": 1000},
        {"chosen_is_rollout_rate": 1.0, "rollout_pointwise_mean": 0.5, "pivot_pointwise_mean": 0.25,
         "judge_invalid_rate": 0.25, "tokens_seen": 2500},
    ]  # fmt: skip
    extra = {
        "judge_calls_per_prefix": 136,
        "pool_size": 17,
        "arm": "phase3",
        "checkpoint": str(outputs / "phase3" / "final"),
        "start_model": TINY,
        "train_rows": 476,
        "script_args": {
            "train_rows": str(outputs / "data" / "examples.jsonl"),
            "model_name_or_path": "embedded",
        },
    }
    return write_metrics(outputs / "phase3", summary, extra, history)


def gate_records(arm: str, scores: dict[str, list[float | None]], condition: str = "two_stage") -> list[dict]:
    records = []
    for prefix_id, group in scores.items():
        for k, score in enumerate(group):
            row = sample_row(
                arm, condition, prefix_id, k, "sha", thought="we recall the plan",
                suffix="and then it rained", thought_ids=[1, 2, 3], boundary_ids=[CLOSE_ID],
                suffix_ids=[4, 5, 6, 7], closed_by_model=False, close_id=CLOSE_ID,
            )  # fmt: skip
            row["score"], row["judge_error"] = score, None if score is not None else "unparseable"
            records.append(row)
    return records


def write_reward_gate(eval_dir: Path) -> Path:
    records = {
        "think_base": gate_records("think_base", {"p0": [0.0, 1.0], "p1": [0.0, 0.0]}),
        "think_phase3": gate_records("think_phase3", {"p0": [1.0, 1.0], "p1": [0.0, None]}),
    }
    out = eval_dir / "reward_gate"
    for arm, rows in records.items():  # the sample files sit next to summary.json, as in a real run
        for row in rows:
            append_row(out / f"{arm}.samples.jsonl", row)
    summary = reward_gate.build_summary(records, reward_gate.pick_phase3_base(list(records)))
    config = {"rows": "outputs/data/rl/rl_rows.jsonl", "split": "heldout", "num_prefixes": 2, "samples": 2,
              "think_max_tokens": 48, "suffix_max_tokens": 128, "judge": {"kind": "offline"}}  # fmt: skip
    return write_summary(out, {**summary, "config": config, "complete": True})


def write_thought_probe(eval_dir: Path) -> Path:
    records = gate_records("think_base", {"p0": [1.0, 0.0], "p1": [1.0, 1.0]}, thought_probe.NORMAL)
    records += gate_records("think_base", {"p0": [0.0, 0.0], "p1": [1.0, 0.0]}, "blank_thought")
    arm = thought_probe.summarize_probe_arm(records, samples=2, bank_size=2)
    config = {"num_prefixes": 2, "samples": 2, "bank_size": 2}
    return write_summary(
        eval_dir / "thought_probe", {"arms": {"think_base": arm}, "config": config, "complete": True}
    )


def write_continuation(eval_dir: Path) -> Path:
    rows = [
        {"id": str(i), "base_text": "a b c d e", "candidate_text": "x y z w v",
         "candidate_is_option_1": i % 2 == 0, "winner": winner}
        for i, winner in enumerate(["candidate", "candidate", "base", None])
    ]  # fmt: skip
    summary = {"base": TINY, "candidate": "outputs/phase3/final", **summarize_continuation(rows),
               "config": {"base": "base", "candidate": "phase3", "judge": "likelihood",
                          "judge_scorer": "think_base", "max_new_tokens": 128}}  # fmt: skip
    out = eval_dir / "continuation"
    out.mkdir(parents=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for row in rows:  # the per-prefix rows live next to the summary, as in a real run
        append_row(out / "samples.jsonl", {**row, "prefix_text": "p", "raw": None, "error": None})
    return out / "summary.json"


def write_reasoning(eval_dir: Path, arm: str, correct: list[bool]) -> None:
    store = SampleStore.open(eval_dir, arm, "gsm8k")
    for i, ok in enumerate(correct):
        store.add(
            {"arm": arm, "benchmark": "gsm8k", "id": f"gsm8k-{i // 2}", "sample_idx": i % 2,
             "prompt_hash": "0" * 16, "completion": "#### 1", "extracted": "1", "gold": "1" if ok else "2",
             "correct": ok,
             "completion_tokens": 10 + i, "finish_reason": "stop", "permutation": None, "grade_error": None}
        )  # fmt: skip


@pytest.fixture
def outputs(tmp_path) -> Path:
    root = tmp_path / "outputs"
    data = root / "data" / "examples.jsonl"
    for i, split in enumerate(["train", "train", "val"]):
        append_row(data, {"id": str(i), "prefix_ids": [1], "suffix_ids": [2], "split": split,
                          "source_sha": "s", "source_id": f"brown/ca0{i}"})  # fmt: skip
    write_phase3(root)
    write_sft(root, "raw_base", 2.694593, 2.694593, 9.5)
    write_sft(root, "think_base", 2.792869, 2.707164, 4.25)
    write_rlmt(root, "think_base_rlmt", [0.125, 0.0625], str(root / "think_base" / "final"))
    eval_dir = root / "eval"
    write_continuation(eval_dir)
    write_reward_gate(eval_dir)
    write_thought_probe(eval_dir)
    write_reasoning(eval_dir, "think_base", [True, False, False, False])
    write_reasoning(eval_dir, "think_phase3", [True, True, False, True])
    return root


def test_full_page_renders_every_section_from_files(outputs):
    page = render_page(outputs)
    # header: generation time, the tiny-model warning and the data the runs used
    assert page.startswith("# trl_ext results\n\nGenerated 20")
    assert "Pipeline check, not research results." in page
    assert "3 prefix/suffix rows (train 2, val 1) from 3 documents of brown" in page
    assert (
        "| think_base_rlmt | `outputs/think_base/final` | `outputs/data/rl/rl_rows.jsonl` | 64 | offline |"
        in page
    )

    # (a) phase3 training and the stage check
    assert f"Source: `{outputs}/phase3/metrics.json` (written " in page
    assert "| phase3 | 2 | 0.750000 | 1.000000 | 0.375000 | 0.500000 | 0.1250 | 17 | 136 | 2,500 |" in page
    assert "- Held-out pairwise continuation quality: phase3 beat base on 2/3 comparisons = 66.67%" in page
    assert "invalid judgements: 1" in page

    # (b) SFT in the seed's columns (throughput excludes the metric evaluations: 4035285 / 995 s)
    assert (
        f"| think_base SFT | {outputs}/think_base/final | 2.792869 | 2.707164 | 2.792869 | 0.019397 "
        "| 4,035,285 | 4055.56 | 69.78 | 4.250000 |"
    ) in page
    assert f"think_phase3: not run (expected `{outputs}/think_phase3/metrics.json`)." in page

    # (c) RLMT: stopped_reason null as the seed prints it
    assert (
        "| think_base_rlmt | 2 | null | 0.093750 | 0.062500 | 0.5000 | 0.5000 | 0.5000 | 0.0000 | 0.0000 "
        "| -0.000500 | 0.125000 |"
    ) in page
    assert f"think_phase3_rlmt: not run (expected `{outputs}/think_phase3_rlmt/metrics.json`)." in page

    # (d) reward gate: per-arm, comparisons, go/no-go (think_phase3 has one invalid verdict of 4)
    assert "| think_base | 0.250000 | 0.433013 | 0.0000 | 0.500000 | 0.500000 | 0.500000 | 0.0000 |" in page
    assert "| think_phase3 | 0.666667 | 0.471405 | 0.2500 |" in page
    assert "| think_phase3_minus_think_base | 0.250000 | 0.500000 | 0.000000 | 0.500000 | 2 |" in page
    assert "- reward_validity_ok: false" in page and "- phase3_higher_mean_reward: true" in page

    # (e) thought probe: the probe's own table plus the control verdict
    assert "| think_base | 0.7500 | 0.2500 | — | — | — |" in page
    assert "- think_base: normal thought beats the best control (blank_thought): true" in page

    # (f) reasoning eval through eval.report; the gate/continuation sample files are not arms
    assert "| think_base | GSM8K | 0.250000 | 1 / 4 |" in page
    assert "| think_phase3 | GSM8K | 0.750000 | 3 / 4 |" in page
    assert "| Phase3+Think vs Base+Think | GSM8K | +0.500000 |" in page
    assert "reward_gate |" not in page and "| continuation |" not in page
    assert "not run" in page  # only the two absent arms above
    assert page.count("not run (expected") == 2


def test_missing_inputs_are_one_line_each(tmp_path):
    outputs = tmp_path / "outputs"
    page = render_page(outputs)
    expected = [
        f"Training: not run (expected `{outputs}/phase3/metrics.json`).",
        "Stage check (`python -m eval continuation`): "
        f"not run (expected `{outputs}/eval/continuation/summary.json`).",
        f"not run (expected `{outputs}/{{raw_base,think_base,think_phase3}}/metrics.json`).",
        f"not run (expected `{outputs}/{{think_base_rlmt,think_phase3_rlmt}}/metrics.json`).",
        f"not run (expected `{outputs}/eval/reward_gate/summary.json`).",
        f"not run (expected `{outputs}/eval/thought_probe/summary.json`).",
        f"not run (expected `{outputs}/eval/<arm>/<benchmark>.jsonl`).",
    ]
    for line in expected:
        assert line in page.splitlines(), line
    assert page.count("not run (expected") == len(expected)
    assert "model is unknown" in page and "Pipeline check" not in page


def test_absent_keys_are_named_and_a_real_model_is_not_flagged(tmp_path):
    outputs = tmp_path / "outputs"
    path = write_rlmt(outputs, "think_phase3_rlmt", [0.5], "Qwen/Qwen3-0.6B-Base")
    data = json.loads(path.read_text())
    del data["avg_artifact_rate"], data["wall_time_s"]
    path.write_text(json.dumps(data))
    write_metrics(
        outputs / "phase3", {}, {"start_model": "Qwen/Qwen3-0.6B-Base"}, [{"loss": 1.0}], finished=False
    )
    page = render_page(outputs)
    assert f"Keys absent from `{path}` (shown as n/a): avg_artifact_rate, wall_time_s." in page
    assert "| 0.500000 | 0.500000 | 0.5000 |" in page and "| n/a | n/a |" in page
    assert "| phase3 (unfinished) | 1 |" in page
    assert "Pipeline check" not in page


def test_the_real_embedded_model_is_named_as_demo_scale_not_as_a_pipeline_check(tmp_path):
    outputs = tmp_path / "outputs"
    # a run started from the embedded SmolLM2 by name, and an RLMT arm started from a checkpoint trained
    # from it: save_pretrained writes no marker, so the checkpoint is known by its config's shape
    smollm2 = "/cache/trl_ext/smollm2-135m-instruct"
    write_metrics(outputs / "phase3", {}, {"start_model": smollm2}, [{"loss": 1.0}])
    trained = tmp_path / "think_base" / "final"
    trained.mkdir(parents=True)
    shape = {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576, "intermediate_size": 1536,
             "num_attention_heads": 9, "vocab_size": 49216}  # fmt: skip
    (trained / "config.json").write_text(json.dumps(shape))
    write_rlmt(outputs, "think_base_rlmt", [0.5], str(trained))
    page = render_page(outputs)
    assert "A small real model at demo scale." in page and "SmolLM2-135M-Instruct" in page
    assert "Pipeline check" not in page
    # the same shape with another depth is some other model: neither note
    shape["num_hidden_layers"] = 28
    (trained / "config.json").write_text(json.dumps(shape))
    (outputs / "phase3" / "metrics.json").unlink()
    page = render_page(outputs)
    assert "A small real model" not in page and "Pipeline check" not in page
    # a run started with --model_name_or_path embedded:smollm2 is named from its script args
    write_metrics(outputs / "phase3", {}, {"start_model": "somewhere", "script_args": {
        "model_name_or_path": "embedded:smollm2"}}, [{"loss": 1.0}])  # fmt: skip
    assert "A small real model at demo scale." in render_page(outputs)


def test_cli_writes_the_page_and_bad_json_is_a_clear_error(outputs, tmp_path, capsys):
    out = tmp_path / "docs" / "results.md"
    assert eval_main(["results-page", "--outputs", str(outputs), "--out", str(out)]) == 0
    assert "| think_base SFT |" in out.read_text()
    (outputs / "think_base" / "metrics.json").write_text('{"arm": "think_base",\n  "val_loss": }\n')
    with pytest.raises(RowFileError, match=r"think_base/metrics.json:2: not valid JSON"):
        render_page(outputs)
    assert eval_main(["results-page", "--outputs", str(outputs), "--out", str(out)]) == 2
    assert "think_base/metrics.json:2" in capsys.readouterr().err


@pytest.mark.slow
def test_real_recipe_chain_renders_without_absent_keys(tmp_path, embedded, qwen_tokenizer):
    """phase3 → think_phase3 SFT → think_phase3_rlmt, a step or two each on the embedded default,
    then the page: every column of the three tables is found in what the recipes really write."""
    from recipe_data import write_recipe_inputs

    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    import phase3_online_dpo
    import rlmt_think_base
    import sft_common

    outputs = tmp_path / "outputs"
    data = write_recipe_inputs(outputs / "data", embedded, qwen_tokenizer, n_augmented=8, chunk_tokens=48)
    common = ["--report_to", "none", "--logging_steps", "1", "--save_strategy", "no"]
    phase3_online_dpo.main(
        ["--judge", "likelihood", "--max_steps", "1", "--num_rollouts", "2", "--max_new_tokens", "8",
         "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1", "--max_train_rows", "2",
         "--train_rows", str(data / "examples.jsonl"), "--output_dir", str(outputs / "phase3"),
         *common]
    )  # fmt: skip
    sft_common.main(
        str(REPO_ROOT / "recipes" / "configs" / "sft_think_phase3.yaml"),
        ["--model_name_or_path", str(outputs / "phase3" / "final"),
         "--output_dir", str(outputs / "think_phase3"), "--train_rows", str(data / "sft.jsonl"),
         "--val_rows", str(data / "heldout.jsonl"),
         "--max_steps", "1", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2",
         "--val_max_rows", "2", "--generation_rows", "2", "--generation_max_new_tokens", "8", *common],
    )  # fmt: skip
    rlmt_think_base.main(
        REPO_ROOT / "recipes" / "configs" / "rlmt_think_phase3.yaml",
        ["--model_name_or_path", str(outputs / "think_phase3" / "final"), "--judge", "offline",
         "--rl_rows", str(data / "rl_rows.jsonl"), "--output_dir", str(outputs / "think_phase3_rlmt"),
         "--max_steps", "1", "--num_generations", "2", "--per_device_train_batch_size", "4",
         "--think_max_tokens", "4", "--suffix_max_tokens", "6", "--top_p", "1.0", *common],
    )  # fmt: skip

    page = render_page(outputs)
    assert "Keys absent" not in page, page
    assert "Pipeline check, not research results." in page
    lines = page.splitlines()
    phase3 = next(line for line in lines if line.startswith("| phase3 | 1 |"))
    sft = next(line for line in lines if line.startswith("| think_phase3 SFT |"))
    rlmt = next(line for line in lines if line.startswith("| think_phase3_rlmt | 1 | null |"))
    for row in (phase3, sft, rlmt):
        assert "n/a" not in row, row
    assert "| think_phase3_rlmt | `outputs/think_phase3/final` |" in page  # the lineage, relative to the page
    # continuation, raw_base, think_base, think_base_rlmt, gate, probe, reasoning eval
    assert page.count("not run (expected") == 7


def test_paths_on_the_page_are_names_or_relative_never_this_machines(tmp_path, embedded, monkeypatch):
    """A committed page must not carry absolute paths: embedded models by name, the rest relative."""
    outputs = tmp_path / "outputs"
    write_metrics(outputs / "phase3", {}, {"start_model": str(embedded.model_dir)}, [{"loss": 1.0}])
    trained = tmp_path / "somewhere" / "think_base" / "final"  # an RLMT start model outside the outputs
    trained.mkdir(parents=True)
    write_rlmt(outputs, "think_base_rlmt", [0.5], str(trained))
    monkeypatch.chdir(tmp_path)
    page = render_page(Path("outputs"))
    assert "| phase3 | `embedded:tiny` |" in page
    assert "| think_base_rlmt | `somewhere/think_base/final` |" in page
    assert str(embedded.root) not in page
