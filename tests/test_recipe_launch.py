"""Recipes under ``accelerate launch`` with 1, 2 and 8 CPU processes (gloo): the arm's optimizer step
is the same on every world size without batch flags, and metrics.json records the split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    recipe: str, processes: int, flags: list[str], config: Path | None = None
) -> subprocess.CompletedProcess:
    default = "cpu_single.yaml" if processes == 1 else "cpu_2proc.yaml"
    config = config or REPO_ROOT / "recipes" / "accelerate" / default
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
        "--num_processes", str(processes), "--main_process_port", str(_free_port()),
        str(REPO_ROOT / "recipes" / recipe), "--disable_tqdm", "true", "--report_to", "none", *flags,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def data(tmp_path_factory, embedded, qwen_tokenizer) -> Path:
    from recipe_data import write_recipe_inputs

    return write_recipe_inputs(tmp_path_factory.mktemp("launch_data"), embedded, qwen_tokenizer, 12, 32)


@pytest.mark.parametrize(("processes", "per_device"), [(1, 8), (2, 4), (8, 1)])
def test_rlmt_step_is_the_same_on_1_2_and_8_processes(data, tmp_path, processes, per_device):
    """2 prefixes × K=4 = 8 samples per optimizer step, split 8 / 4 / 1 per process, no batch flags."""
    out = tmp_path / "rlmt"
    done = launch("rlmt_think_base.py", processes, [
        "--model_name_or_path", "embedded", "--judge", "offline", "--offline_threshold", "0.02",
        "--rl_rows", str(data / "rl_rows.jsonl"), "--output_dir", str(out), "--num_generations", "4",
        "--think_max_tokens", "4", "--suffix_max_tokens", "6", "--top_p", "1.0", "--max_steps", "1",
        "--save_strategy", "no",
    ])  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == processes and metrics["completed_steps"] == 1
    assert metrics["samples_per_step"] == 8 and metrics["prefixes_per_step"] == 2
    batch = metrics["batch"]
    split = (batch["per_device_train_batch_size"], batch["gradient_accumulation_steps"])
    assert batch["world_size"] == processes and split == (per_device, 1)
    samples = (out / "samples" / "step_0001_samples.jsonl").read_text().splitlines()
    assert len(samples) == 8  # every sample of the step, gathered from all ranks
    assert (out / "final" / "model.safetensors").exists()


def test_phase3_and_sft_on_8_processes(data, tmp_path):
    """phase3: 8 prefixes = 8 × 1 × 1; SFT: the arm's 16 sequences = 8 × 2 × 1 (no batch flags)."""
    out = tmp_path / "phase3"
    done = launch("phase3_online_dpo.py", 8, [
        "--model_name_or_path", "embedded", "--judge", "likelihood", "--num_rollouts", "2",
        "--max_new_tokens", "4", "--prefixes_per_step", "8", "--train_rows", str(data / "examples.jsonl"),
        "--output_dir", str(out), "--max_steps", "1", "--logging_steps", "1", "--save_strategy", "no",
    ])  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 8 and metrics["prefixes_per_step"] == 8
    assert metrics["batch"]["per_device_train_batch_size"] == 1
    assert [h["dpo_total_prefixes"] for h in metrics["history"] if "dpo_total_prefixes" in h] == [8]

    out = tmp_path / "think_base"
    done = launch("sft_think_base.py", 8, [
        "--train_rows", str(data / "sft.jsonl"), "--val_rows", str(data / "heldout.jsonl"),
        "--output_dir", str(out), "--max_steps", "1", "--logging_steps", "1", "--save_strategy", "no",
        "--val_max_rows", "2", "--generation_rows", "2", "--generation_max_new_tokens", "4",
    ])  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 8 and metrics["sequences_per_step"] == 16
    assert (
        metrics["batch"]["per_device_train_batch_size"],
        metrics["batch"]["gradient_accumulation_steps"],
    ) == (2, 1)


def test_a_world_size_that_cannot_hold_the_step_fails_at_start_with_the_flags(data, tmp_path):
    done = launch("phase3_online_dpo.py", 3, [
        "--model_name_or_path", "embedded", "--train_rows", str(data / "examples.jsonl"),
        "--output_dir", str(tmp_path / "phase3"),
    ])  # fmt: skip
    assert done.returncode != 0
    assert "--prefixes_per_step 15 or --prefixes_per_step 18" in done.stderr
    assert "--num_processes in {1, 2, 4, 8, 16}" in done.stderr
    assert not (tmp_path / "phase3").exists()


def test_zero3_on_cpu_runs_both_trainers_and_exports_the_fp32_master_weights(data, tmp_path, tiny_model_dir):
    """recipes/accelerate/zero3.yaml with 2 CPU processes: phase3 loads its explicit reference by itself
    (no flag), RLMT's trainer builds its own, and final/ is gathered from the sharded fp32 weights."""
    from safetensors.torch import load_file

    config = yaml.safe_load((REPO_ROOT / "recipes" / "accelerate" / "zero3.yaml").read_text())
    config.update(num_processes=2, main_process_ip="127.0.0.1")
    (tmp_path / "zero3_cpu.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "phase3"
    done = launch("phase3_online_dpo.py", 2, [
        "--model_name_or_path", "embedded", "--judge", "likelihood", "--num_rollouts", "2",
        "--max_new_tokens", "4", "--prefixes_per_step", "2", "--train_rows", str(data / "examples.jsonl"),
        "--output_dir", str(out), "--max_steps", "1", "--save_strategy", "no", "--warmup_steps", "0",
        "--learning_rate", "1e-4",
    ], config=tmp_path / "zero3_cpu.yaml")  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reference_model"] == "explicit copy" and metrics["world_size"] == 2
    start = load_file(str(tiny_model_dir / "model.safetensors"))
    final = load_file(str(out / "final" / "model.safetensors"))
    assert set(final) == set(start)
    assert all(final[k].dtype == torch.float32 and final[k].shape == v.shape for k, v in start.items())
    assert any(not torch.equal(final[k], v) for k, v in start.items())  # the trained weights, not the start

    out = tmp_path / "rlmt"
    done = launch("rlmt_think_base.py", 2, [
        "--model_name_or_path", "embedded", "--judge", "offline", "--rl_rows", str(data / "rl_rows.jsonl"),
        "--output_dir", str(out), "--num_generations", "4", "--think_max_tokens", "4",
        "--suffix_max_tokens", "6", "--top_p", "1.0", "--max_steps", "1", "--save_strategy", "no",
    ], config=tmp_path / "zero3_cpu.yaml")  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads((out / "metrics.json").read_text())["completed_steps"] == 1
    assert set(load_file(str(out / "final" / "model.safetensors"))) == set(start)
