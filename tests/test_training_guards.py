"""NonFiniteGuard on a real transformers Trainer with the tiny Qwen3 model: a non-finite loss, gradient norm
or weight skips the update, stops the run, and never reaches a checkpoint."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

from trl_ext.callbacks import MetricsJsonCallback
from trl_ext.training_guards import NonFiniteGuard, NonFiniteTrainingError


def make_trainer(tiny_model_dir, out: Path, **overrides):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.randint(0, 1000, (8, 16), generator=torch.Generator().manual_seed(0))
    dataset = [{"input_ids": row, "labels": row} for row in ids]
    values = dict(
        output_dir=str(out), max_steps=3, per_device_train_batch_size=2, logging_steps=1, report_to=[],
        use_cpu=True, save_strategy="steps", save_steps=1, dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    trainer = Trainer(model=model, args=TrainingArguments(**(values | overrides)), train_dataset=dataset)
    metrics = MetricsJsonCallback(out, extra={"stopped_reason": None})
    trainer.add_callback(metrics)
    NonFiniteGuard.install(trainer, metrics_json=metrics)
    return trainer


def weights(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


def checkpoint_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def stopped_reason(out: Path) -> str:
    return json.loads((out / "metrics.json").read_text())["stopped_reason"]


def test_nan_gradient_norm_with_a_finite_loss_skips_the_update_and_saves_nothing_bad(
    tiny_model_dir, tmp_path
):
    """The reported failure: lr 1e30 + weight decay → step 2 has a finite loss but a NaN gradient norm.
    Without the guard checkpoint-2 holds 100% NaN weights."""
    out = tmp_path / "out"
    trainer = make_trainer(tiny_model_dir, out, learning_rate=1e30, weight_decay=0.1, max_grad_norm=0.1)
    with pytest.raises(
        NonFiniteTrainingError, match=r"non-finite gradient norm at step 2 .*checkpoint-1"
    ) as err:
        trainer.train()
    assert err.value.step == 2 and err.value.last_good_checkpoint == str(out / "checkpoint-1")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    saved = checkpoint_weights(out / "checkpoint-1")
    assert all(torch.isfinite(w).all() for w in saved.values())
    # The update of step 2 was skipped: the weights in memory are still step 1's.
    assert all(torch.equal(w, saved[n]) for n, w in weights(trainer).items() if n in saved)
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1]
    assert stopped_reason(out) == "non_finite_grad_norm"


def test_nan_loss_in_one_micro_batch_stops_before_the_first_update(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    trainer = make_trainer(tiny_model_dir, out, gradient_accumulation_steps=2)
    calls = []

    def nan_in_first_forward(module, args, output):  # injected fault: only the first micro-batch
        calls.append(1)
        return output * float("nan") if len(calls) == 1 else output

    trainer.model.model.norm.register_forward_hook(nan_in_first_forward)
    before = weights(trainer)
    with pytest.raises(NonFiniteTrainingError, match=r"non-finite loss at step 1 \(loss nan.*checkpoint-0"):
        trainer.train()
    assert len(calls) == 2  # the check waited for the last micro-batch of the optimizer step
    assert all(torch.equal(w, before[n]) for n, w in weights(trainer).items())  # no update happened
    saved = checkpoint_weights(out / "checkpoint-0")  # the weights from before the bad step
    assert all(torch.equal(saved[n], before[n]) for n in saved)
    assert stopped_reason(out) == "non_finite_loss"


class CorruptOneWeight(TrainerCallback):
    """Injected fault: the optimizer step itself writes a NaN into a weight (finite loss and gradients)."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            next(model.parameters())[0, 0] = float("nan")


def test_non_finite_weights_after_an_optimizer_step_are_never_saved(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    trainer = make_trainer(tiny_model_dir, out)
    trainer.add_callback(CorruptOneWeight())
    with pytest.raises(NonFiniteTrainingError, match=r"optimizer step 1 produced non-finite weights"):
        trainer.train()
    assert not list(out.glob("checkpoint-*")) and stopped_reason(out) == "non_finite_weights"


def test_a_finite_run_is_untouched(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    trainer = make_trainer(tiny_model_dir, out, max_steps=2, save_strategy="no")
    trainer.train()
    assert trainer.state.global_step == 2 and stopped_reason(out) is None


DEEPSPEED_SCRIPT = """
import json, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
from trl_ext.training_guards import NonFiniteGuard, NonFiniteTrainingError

model_dir, out = sys.argv[1], Path(sys.argv[2])
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
ids = torch.randint(0, 1000, (16, 16), generator=torch.Generator().manual_seed(0))
args = TrainingArguments(
    output_dir=str(out), max_steps=3, per_device_train_batch_size=2, logging_steps=1, report_to=[],
    use_cpu=True, save_strategy="steps", save_steps=1, learning_rate=1e30, weight_decay=0.1,
    max_grad_norm=0.1,
)
trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": r, "labels": r} for r in ids])
NonFiniteGuard.install(trainer)
try:
    trainer.train()
except NonFiniteTrainingError as err:
    if trainer.is_world_process_zero():
        record = {"step": err.step, "reason": err.reason, "message": str(err)}
        (out / "stopped.json").write_text(json.dumps(record))
    sys.exit(3)
"""


@pytest.mark.slow
def test_deepspeed_zero2_never_saves_non_finite_weights(tiny_model_dir, tmp_path):
    """Under DeepSpeed the engine steps inside backward; the guard must still stop and save nothing bad."""
    pytest.importorskip("deepspeed")
    import os
    import socket
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    script, out = tmp_path / "run.py", tmp_path / "out"
    script.write_text(DEEPSPEED_SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(repo / "recipes" / "accelerate" / "zero2.yaml"), "--num_processes", "2", "--main_process_port",
        str(port), str(script), str(tiny_model_dir), str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and (out / "stopped.json").exists(), done.stderr[-3000:]
    stopped = json.loads((out / "stopped.json").read_text())
    assert stopped["step"] == 2 and "DeepSpeed" in stopped["message"] and "checkpoint-1" in stopped["message"]
    for folder in out.glob("checkpoint-*"):
        assert folder.name == "checkpoint-1"
        assert all(torch.isfinite(w).all() for w in checkpoint_weights(folder).values())
