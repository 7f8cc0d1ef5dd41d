"""Stop a run on a non-finite loss, gradient norm or weight before the bad update reaches a checkpoint.

Works with any ``transformers.Trainer`` (TRL's trainers included)::

    from trl_ext.training_guards import NonFiniteGuard, NonFiniteTrainingError

    guard = NonFiniteGuard.install(trainer, metrics_json=metrics_callback)  # metrics_json is optional
    trainer.train()  # raises NonFiniteTrainingError naming the step and the last good checkpoint

What is checked, once per optimizer step, with one all-reduce so that every rank takes the same branch:

* the loss of every micro-batch (the value ``training_step`` returns; a NaN that ``logging_nan_inf_filter``
  would hide from the logs still counts);
* the gradient norm after the last micro-batch's backward, before clipping and before ``optimizer.step()``;
* every parameter after each optimizer step, so a checkpoint is never written from non-finite weights even
  when the optimizer itself overflowed.

On a failure the guard clears the gradients, saves ``checkpoint-<step>`` from the weights *before* the bad
step (plain PyTorch, DDP, FSDP; skipped when ``save_strategy="no"`` or when that checkpoint exists), sets
``stopped_reason`` in ``metrics.json`` and raises :class:`NonFiniteTrainingError` out of ``trainer.train()``,
so a script cannot go on to export a final model by accident.

DeepSpeed: accelerate runs the engine's ``step()`` inside ``backward``, so when the guard sees the engine's
gradient norm the update has already been applied (or skipped by DeepSpeed's own overflow check). The guard
then saves nothing and raises; the last good checkpoint is the last one written before the failure. The
weight check after each step still refuses any save from non-finite weights.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

logger = logging.getLogger(__name__)

_REASONS = {
    "non_finite_loss": "non-finite loss",
    "non_finite_grad_norm": "non-finite gradient norm",
    "non_finite_on_another_rank": "non-finite loss or gradient norm on another rank",
    "non_finite_weights": "non-finite weights",
}


class TrainingStoppedError(RuntimeError):
    """A safety check stopped training; raised out of ``trainer.train()`` on every rank so that no script
    goes on to export a final model. ``reason`` is what ``metrics.json`` records as ``stopped_reason``."""

    def __init__(self, message: str, *, step: int, reason: str, last_good_checkpoint: str | None):
        super().__init__(message)
        self.step, self.reason, self.last_good_checkpoint = step, reason, last_good_checkpoint


class NonFiniteTrainingError(TrainingStoppedError):
    """A non-finite loss, gradient norm or weight stopped training."""


class NonFiniteGuard(TrainerCallback):
    """Skips the update and stops training on a non-finite loss / gradient norm / weight.

    Use :meth:`install` (it also wraps ``trainer.training_step`` to see each micro-batch's loss).
    ``metrics_json`` is a :class:`trl_ext.callbacks.MetricsJsonCallback` whose ``extra["stopped_reason"]``
    is set and written on a stop. ``save_on_stop`` saves the last good weights as a checkpoint.
    """

    def __init__(self, trainer: Any, metrics_json: Any | None = None, save_on_stop: bool = True):
        self.trainer = trainer
        self.metrics_json = metrics_json
        self.save_on_stop = save_on_stop
        self.stopped_reason: str | None = None
        self._bad_loss: float | None = None
        self._last_loss: float | None = None

    @classmethod
    def install(
        cls, trainer: Any, metrics_json: Any | None = None, save_on_stop: bool = True
    ) -> NonFiniteGuard:
        guard = cls(trainer, metrics_json, save_on_stop)
        trainer.add_callback(guard)
        inner = trainer.training_step

        @functools.wraps(inner)
        def training_step(model, inputs, num_items_in_batch=None):
            loss = inner(model, inputs, num_items_in_batch)
            guard.after_micro_batch(loss)
            return loss

        trainer.training_step = training_step
        return guard

    # ------------------------------------------------------------------------------------------ checks
    def after_micro_batch(self, loss: torch.Tensor) -> None:
        """Record the loss; on the last micro-batch of an optimizer step check loss and gradient norm."""
        value = loss.detach().float()
        self._last_loss = float(value.sum())
        if self._bad_loss is None and not math.isfinite(self._last_loss):
            self._bad_loss = self._last_loss
        if not self.trainer.accelerator.sync_gradients:
            return  # gradients are still accumulating; the optimizer step comes after the last micro-batch
        bad_loss, self._bad_loss = self._bad_loss, None
        grad_norm = self._grad_norm()
        bad_grad = grad_norm is not None and not math.isfinite(grad_norm)
        if not self._any_rank(bad_loss is not None or bad_grad):
            return
        if bad_loss is not None:
            reason = "non_finite_loss"
        else:
            reason = "non_finite_grad_norm" if bad_grad else "non_finite_on_another_rank"
        loss_text = bad_loss if bad_loss is not None else self._last_loss
        self._stop(reason, f"loss {loss_text}, gradient norm {grad_norm}")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Runs after optimizer.step() and before any save of this step: non-finite weights are never saved.
        bad = self._non_finite_parameters(self.trainer.model)
        if self._any_rank(bool(bad)):
            names = bad[:3] or "on another rank"
            self._stop("non_finite_weights", f"non-finite parameters: {names}", after=True)

    def _grad_norm(self) -> float | None:
        trainer = self.trainer
        if trainer.is_deepspeed_enabled:
            engine = getattr(trainer.accelerator, "deepspeed_engine_wrapped", None)
            norm = engine.get_global_grad_norm() if engine is not None else None
            return None if norm is None else float(norm)
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        if not grads:
            return None
        norm = torch.nn.utils.get_total_norm(grads, 2.0, error_if_nonfinite=False)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2 DTensor
        return float(norm)

    @staticmethod
    def _non_finite_parameters(model: torch.nn.Module) -> list[str]:
        """Names of parameters holding NaN/inf: chunked so that no parameter-sized temporary is allocated,
        and one device sync for the whole model."""
        names, flags = [], []
        for name, param in model.named_parameters():
            data = getattr(param, "ds_tensor", None)  # ZeRO-3 keeps the local shard here
            data = param.data if data is None else data
            data = data.to_local() if hasattr(data, "to_local") else data  # FSDP2 DTensor
            if data.numel():
                chunks = [torch.isfinite(c).all() for c in data.detach().reshape(-1).split(1 << 24)]
                names.append(name)
                flags.append(torch.stack(chunks).all())
        if not flags:
            return []
        finite = torch.stack([f.to(flags[0].device) for f in flags]).tolist()  # params may span devices
        return [name for name, ok in zip(names, finite) if not ok]

    def _any_rank(self, flag: bool) -> bool:
        accelerator = self.trainer.accelerator
        flags = accelerator.gather(torch.tensor([float(flag)], device=accelerator.device))
        return bool(flags.max().item() > 0)

    # ------------------------------------------------------------------------------------------ stop
    def _stop(self, reason: str, detail: str, after: bool = False) -> None:
        trainer, args = self.trainer, self.trainer.args
        step = trainer.state.global_step if after else trainer.state.global_step + 1
        deepspeed = trainer.is_deepspeed_enabled
        trainer.model.zero_grad(set_to_none=True)  # nothing can apply this step's gradients any more
        saved = None
        if not after and not deepspeed and self.save_on_stop and args.save_strategy != "no":
            saved = self._save_last_good()
        last_good = saved or last_checkpoint(args.output_dir)
        if after:
            what = f"the optimizer step {step} produced non-finite weights ({detail}); nothing was saved"
        elif deepspeed:
            what = (
                f"{_REASONS[reason]} at step {step} ({detail}); DeepSpeed applies its update inside "
                "backward, so the weights in memory may already be non-finite and nothing was saved"
            )
        else:
            what = f"{_REASONS[reason]} at step {step} ({detail}); the update was skipped"
        last_text = last_good or "none (no checkpoint saved yet)"
        message = (
            f"{what}. Training stopped. Last good checkpoint: {last_text}. "
            "Lower learning_rate / max_grad_norm or inspect the data of this step, then resume from it."
        )
        self.stopped_reason = reason
        if self.metrics_json is not None:
            self.metrics_json.extra.update(stopped_reason=reason, stopped_message=message)
            self.metrics_json.write(trainer.state, finished=False)
        logger.error(message)
        raise NonFiniteTrainingError(message, step=step, reason=reason, last_good_checkpoint=last_good)

    def _save_last_good(self) -> str | None:
        """``checkpoint-<global_step>`` from the weights before the bad step, unless it exists already."""
        trainer = self.trainer
        name = f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
        folder = Path(trainer._get_output_dir(trial=None)) / name
        if self._any_rank(bool(self._non_finite_parameters(trainer.model))):
            return None  # never write non-finite weights (only possible when the guard was installed late)
        if not folder.exists():
            trainer._save_checkpoint(trainer.model_wrapped, trial=None)
        return str(folder)


def require_fp32_trainable_weights(trainer) -> None:
    """Refuse bf16/fp16 trainable weights: AdamW would update them directly and, at RLMT's lr 1e-7, almost
    none would change. Skipped under DeepSpeed (it keeps fp32 master weights itself) and when the
    trainer's ``args.require_fp32_weights`` is false."""
    if not trainer.args.require_fp32_weights or trainer.is_deepspeed_enabled:
        return
    params = trainer.model.parameters()
    low = sorted({str(p.dtype) for p in params if p.requires_grad and p.dtype != torch.float32})
    if low:
        raise ValueError(
            f"trainable parameters are {', '.join(low)}: AdamW would update low-precision weights "
            "directly (at lr 1e-7 almost none change). Load the model in float32 (bf16: true then runs "
            "the compute under autocast), or set require_fp32_weights: false to train them anyway"
        )


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder in ``output_dir`` (None when there is none)."""
    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
