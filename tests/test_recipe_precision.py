"""Each recipe with ``--bf16 true`` trains fp32 weights: at lr 1e-7 they move after one step, checkpoints
hold fp32, and ``final/`` is written in ``export_dtype`` and says so. A non-finite SFT step stops the
run non-zero, names the last good checkpoint, and writes no ``final/``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

ONE_STEP = [
    "--bf16", "true", "--learning_rate", "1e-7", "--warmup_steps", "0", "--max_steps", "1",
    "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1", "--report_to", "none",
]  # fmt: skip


def _recipes():
    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    import phase3_online_dpo
    import rlmt_think_base
    import sft_common

    return phase3_online_dpo, sft_common, rlmt_think_base


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _assert_fp32_and_moved(checkpoint: Path, start: dict[str, torch.Tensor]) -> float:
    trained = _weights(checkpoint)
    assert {t.dtype for t in trained.values()} == {torch.float32}, checkpoint
    changed = sum(int((trained[k] != v).sum()) for k, v in start.items() if k in trained)
    total = sum(v.numel() for k, v in start.items() if k in trained)
    share = changed / total
    # bf16 weights would keep ~0.1% of their values at this lr (a 1e-7 step is below bf16's resolution)
    assert share > 0.5, f"{checkpoint}: only {share:.1%} of the weights changed"
    return share


@pytest.fixture(scope="module")
def data(tmp_path_factory, embedded, qwen_tokenizer):
    from recipe_data import write_recipe_inputs

    return write_recipe_inputs(tmp_path_factory.mktemp("precision_data"), embedded, qwen_tokenizer, 8, 48)


def test_every_recipe_trains_fp32_weights_under_bf16(data, tmp_path, tiny_model_dir):
    phase3, sft, rlmt = _recipes()
    start = _weights(tiny_model_dir)

    out = tmp_path / "phase3"
    metrics = phase3.main(
        ["--model_name_or_path", "embedded", "--judge", "likelihood", "--num_rollouts", "3",
         "--max_new_tokens", "8", "--prefixes_per_step", "2", "--max_train_rows", "4",
         "--train_rows", str(data / "examples.jsonl"), "--output_dir", str(out), *ONE_STEP]
    )  # fmt: skip
    _assert_fp32_and_moved(out / "checkpoint-1", start)
    assert metrics["precision"] == {
        "weights": "float32",
        "compute": "bf16 autocast",
        "export_dtype": "float32",
    }
    assert metrics["batch"]["units_per_step"] == 2 and metrics["world_size"] == 1
    assert {t.dtype for t in _weights(out / "final").values()} == {torch.float32}
    assert "Weights: **float32**" in (out / "final" / "README.md").read_text()

    out = tmp_path / "think_base"
    metrics = sft.main(
        str(REPO_ROOT / "recipes" / "configs" / "sft_think_base.yaml"),
        ["--train_rows", str(data / "sft.jsonl"), "--val_rows", str(data / "heldout.jsonl"),
         "--sequences_per_step", "2", "--val_max_rows", "2", "--generation_rows", "2",
         "--generation_max_new_tokens", "4", "--export_dtype", "bfloat16", "--output_dir", str(out),
         *ONE_STEP],
    )  # fmt: skip
    _assert_fp32_and_moved(out / "checkpoint-1", start)
    final = _weights(out / "final")  # a serving copy in bf16, and it says so
    assert {t.dtype for t in final.values()} == {torch.bfloat16}
    assert json.loads((out / "final" / "config.json").read_text())["dtype"] == "bfloat16"
    assert "Weights: **bfloat16**" in (out / "final" / "README.md").read_text()
    assert metrics["precision"]["export_dtype"] == "bfloat16" and metrics["sequences_per_step"] == 2

    # RLMT on the embedded SmolLM2 (a real model): its continuations overlap the references sometimes, so
    # the offline judge's reward varies within a group. (Random-weight samples all score 0: with no
    # advantage and policy == reference, the gradient is exactly zero and nothing could move.)
    from trl_ext.assets import embedded_model_dir

    out = tmp_path / "rlmt"
    metrics = rlmt.main(
        REPO_ROOT / "recipes" / "configs" / "rlmt_think_base.yaml",
        ["--model_name_or_path", "embedded:smollm2", "--judge", "offline", "--offline_threshold", "0.05",
         "--rl_rows", str(data / "rl_rows.jsonl"), "--num_generations", "4", "--prefixes_per_step", "1",
         "--think_max_tokens", "4", "--suffix_max_tokens", "12", "--top_p", "1.0", "--output_dir", str(out),
         *ONE_STEP],
    )  # fmt: skip
    step = next(h for h in metrics["history"] if "reward_std" in h)
    assert step["reward_std"] > 0  # the reward has signal: the update is not the (zero) KL gradient alone
    _assert_fp32_and_moved(out / "checkpoint-1", _weights(embedded_model_dir("smollm2")))
    assert metrics["samples_per_step"] == 4 and metrics["batch"]["per_device_train_batch_size"] == 4
    assert {t.dtype for t in _weights(out / "final").values()} == {torch.float32}


def test_sft_non_finite_step_stops_without_final(data, tmp_path):
    """lr 1e30: step 1 leaves huge (finite) weights, step 2's loss is not finite. The recipe exits
    non-zero naming the step and the last good checkpoint; no final/, metrics.json says why."""
    _, sft, _ = _recipes()
    out = tmp_path / "think_base"
    argv = ["--train_rows", str(data / "sft.jsonl"), "--val_rows", str(data / "heldout.jsonl"),
            "--sequences_per_step", "2", "--val_max_rows", "2", "--generation_rows", "2",
            "--generation_max_new_tokens", "4", "--output_dir", str(out), *ONE_STEP]  # fmt: skip
    argv[argv.index("--learning_rate") + 1] = "1e30"
    argv[argv.index("--max_steps") + 1] = "4"
    argv[argv.index("--bf16") + 1] = "false"
    with pytest.raises(SystemExit) as stop:
        sft.main(str(REPO_ROOT / "recipes" / "configs" / "sft_think_base.yaml"), argv)
    message = str(stop.value.code)
    assert message.startswith("error: training stopped:") and "non-finite" in message
    assert "Last good checkpoint" in message and "checkpoint-" in message
    assert not (out / "final").exists()
    for checkpoint in out.glob("checkpoint-*"):
        assert all(torch.isfinite(t).all() for t in _weights(checkpoint).values()), checkpoint
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_reason"].startswith("non_finite") and not metrics["finished"]
