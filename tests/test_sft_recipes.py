"""The three SFT recipes end to end on the embedded default (tiny rows so they run on CPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from test_sft_metrics import make_augmented_rows

SEED_COLUMNS = (  # the reference SFT table (docs/reference_results.md), in order
    "arm", "checkpoint", "primary_metric", "val_loss_raw", "val_loss_selected", "repetition_4gram_rate",
    "tokens_seen", "throughput_tok_s", "min_available_mem_gib",
)  # fmt: skip
TINY = [
    "--max_steps", "2", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2",
    "--logging_steps", "1", "--val_max_rows", "2", "--generation_rows", "2",
    "--generation_max_new_tokens", "8", "--save_strategy", "no", "--eval_batch_size", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def sft_data(qwen_tokenizer, embedded, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sft_data")
    rows = make_augmented_rows(qwen_tokenizer, embedded.corpus_path, tmp, n=12, chunk_tokens=48)
    train, val = tmp / "sft.jsonl", tmp / "heldout.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:-2]))
    val.write_text("".join(json.dumps(r) + "\n" for r in rows[-2:]))
    return train, val, rows[:-2]


def _recipes_main():
    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    from sft_common import main

    return main


def test_raw_base_in_process_budget_matches(sft_data, tmp_path):
    """raw_base derives max_steps from the rows; the realised tokens match the think arm's budget."""
    train, val, rows = sft_data
    main = _recipes_main()
    out = tmp_path / "raw_base"
    argv = ["--train_rows", str(train), "--val_rows", str(val), "--output_dir", str(out), *TINY]
    argv[argv.index("--max_steps") + 1] = "-1"  # raw_base ignores it: the budget decides
    metrics = main(
        str(REPO_ROOT / "recipes/configs/sft_raw_base.yaml"), [*argv, "--budget_reference_steps", "3"]
    )
    budget = metrics["token_budget"]
    n = len(rows)  # 2 sequences per step; an epoch ends with a short step when n is odd
    think_mean = sum(len(r["interleaved_thinking_ids"]) for r in rows) / n
    raw_len = len(rows[0]["raw_chunk_ids"])
    assert all(len(r["raw_chunk_ids"]) == raw_len for r in rows)
    assert n >= 6
    ref_seqs = 6  # 3 reference steps x 2 sequences, within the first epoch
    assert budget["reference_tokens"] == round(ref_seqs * think_mean)
    assert budget["matched_steps"] > 3
    assert metrics["completed_steps"] == budget["matched_steps"]
    # every raw row has the same length, so the realised tokens equal the planned ones exactly
    assert metrics["tokens_seen"] == budget["matched_tokens"] == budget["matched_sequences"] * raw_len
    assert 0 <= metrics["tokens_seen"] - budget["reference_tokens"] < 2 * raw_len
    for column in SEED_COLUMNS:
        assert metrics[column] is not None, column
    assert metrics["arm"] == "raw_base" and metrics["target_field"] == "raw_chunk_ids"
    assert metrics["val_loss"] == metrics["val_loss_raw"] == metrics["val_loss_selected"]  # own target = raw
    assert (out / "final" / "config.json").exists() and (out / "final" / "tokenizer.json").exists()
    saved = json.loads((out / "final" / "generation_config.json").read_text())
    assert saved["eos_token_id"] == 151643  # the base model's EOS survives the trainer's alignment


def _launch(recipe: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    config = REPO_ROOT / "recipes" / "accelerate" / "cpu_single.yaml"
    launcher = ["--config_file", str(config)] if config.exists() else ["--cpu", "--num_processes", "1"]
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", *launcher, str(REPO_ROOT / "recipes" / recipe), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_think_arms_under_accelerate_launch_and_resume(sft_data, tmp_path, tiny_model_dir):
    train, val, _ = sft_data
    common = ["--train_rows", str(train), "--val_rows", str(val), *TINY]

    base_out = tmp_path / "think_base"
    done = _launch("sft_think_base.py", [*common, "--output_dir", str(base_out)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((base_out / "metrics.json").read_text())
    assert metrics["finished"] and metrics["completed_steps"] == 2 and metrics["arm"] == "think_base"
    for column in SEED_COLUMNS:
        assert metrics[column] is not None, column
    assert metrics["val_loss"] != metrics["val_loss_raw"]  # own target = interleaved ids
    assert metrics["thought_nll"] is not None and metrics["post_thought_16_nll"] is not None

    # think_phase3 refuses to start without the phase3 checkpoint, naming the flag and the fix
    missing = _launch("sft_think_phase3.py", [*common, "--output_dir", str(tmp_path / "p3")], tmp_path)
    assert missing.returncode != 0 and "outputs/phase3/final" in missing.stderr + missing.stdout
    assert "phase3_online_dpo" in missing.stderr + missing.stdout

    # ... and starts from it when present (here: a copy of the tiny model standing in for phase3)
    phase3 = tmp_path / "outputs" / "phase3" / "final"
    shutil.copytree(tiny_model_dir, phase3)
    p3_out = tmp_path / "think_phase3"
    ran = _launch("sft_think_phase3.py", [*common, "--output_dir", str(p3_out), "--save_strategy", "steps",
                                          "--save_steps", "1"], tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    p3 = json.loads((p3_out / "metrics.json").read_text())
    assert p3["arm"] == "think_phase3" and p3["start_model"] == "outputs/phase3/final"

    # resume: a longer run picks up checkpoint-2 instead of starting over
    longer = [*common, "--output_dir", str(p3_out), "--save_strategy", "steps", "--save_steps", "1"]
    longer[longer.index("--max_steps") + 1] = "3"
    resumed = _launch("sft_think_phase3.py", longer, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = json.loads((p3_out / "metrics.json").read_text())["history"]
    train_steps = [h["step"] for h in history if "loss" in h]
    assert train_steps == [3], f"only step 3 is trained after resuming, got {train_steps}"
