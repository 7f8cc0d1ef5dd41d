"""RLMT as a drop-in ``GRPOTrainer``: two-stage external-boundary rollouts and suffix-only judging.

Relies on TRL 1.16 behaviour (pinned ``trl>=1.16,<1.17``; contract test in
``tests/test_grpo_trainer.py``):

* ``GRPOTrainer(rollout_func=...)`` — the official rollout hook; it receives the prompts already
  repeated K times and returns ``prompt_ids`` / ``completion_ids`` / ``logprobs`` plus ``env_mask``,
  which GRPO multiplies into the loss mask of every loss type (``tool_mask``).
* ``_calculate_rewards(inputs, prompts, completions, completion_ids_list)`` — overridden to pass
  the *suffix* as the completion, so reward functions and reward models never see the thought.
* ``self.generation_kwargs`` — TRL's own generation settings (sampling, penalties,
  ``cache_implementation``, ``generation_kwargs``), passed unchanged to both rollout stages.
* ``self._metrics[mode][name]`` — GRPO's own metric buffer, so ``report_to`` backends get every
  RLMT metric with no extra plumbing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from trl import GRPOConfig, GRPOTrainer
from trl.data_utils import is_conversational, maybe_apply_chat_template
from trl.models import unwrap_model_for_generation

from trl_ext.callbacks import MetricsJsonCallback, ThroughputMemoryCallback, available_memory_gib
from trl_ext.client import wait_until_ready
from trl_ext.data.markup import THINK_OPEN
from trl_ext.data.rows import append_row
from trl_ext.group_metrics import AlertThresholds, AlertTracker, GroupSample, alert_name, group_stats
from trl_ext.rollout import Rollout, two_stage_generate
from trl_ext.training_guards import (
    NonFiniteGuard,
    NonFiniteTrainingError,
    TrainingStoppedError,
    last_checkpoint,
    require_fp32_trainable_weights,
)

logger = logging.getLogger(__name__)

# RLMT results-table columns (docs/reference_results.md) → how they summarise the per-step logs. Steps with
# no valid verdict log no reward_mean (missing, not 0), so the means skip them; they are counted apart.
RLMT_TABLE_COLUMNS = {
    "avg_reward": ("mean", "reward_mean"),
    "final_reward": ("last", "reward_mean"),
    "avg_mixed_groups": ("mean", "mixed_group_rate"),
    "avg_near_zero_groups": ("mean", "near_zero_group_rate"),
    "avg_all_zero_groups": ("mean", "all_zero_group_rate"),
    "avg_all_one_groups": ("mean", "all_one_group_rate"),
    "invalid_judge": ("mean", "invalid_judge_rate"),
    "missing_reward_steps": ("last", "missing_reward_steps"),
    "avg_length_drift": ("mean", "length_drift"),
    "avg_artifact_rate": ("mean", "artifact_rate"),
    "avg_total_new_tokens": ("mean", "avg_total_new_tokens"),
    "min_available_mem_gib": ("last", "min_available_mem_gib"),
}

NonFiniteLossError = NonFiniteTrainingError  # the earlier name, kept for callers that catch it


class JudgeUnavailableError(TrainingStoppedError):
    """The judge is not reachable at start, or gave no valid verdict for ``judge_failure_patience``
    consecutive steps (a checkpoint is saved first in that case)."""


@dataclass
class ThinkingGRPOConfig(GRPOConfig):
    r"""
    Configuration for [`ThinkingGRPOTrainer`]: [`~trl.GRPOConfig`] plus the two-stage rollout and RLMT
    monitoring. Defaults are docs/method.md §4 (Dr. GRPO, k3 KL β=0.02, lr 1e-7, grad clip 0.1, K=16,
    2 prefixes per step).

    Parameters that control the two-stage rollout:
        think_max_tokens, suffix_max_tokens, boundary_text, append_think_open, train_on_autonomous_close

    Parameters that control the objective:
        prefixes_per_step, complete_groups_only (plus GRPO's ``loss_type``, ``scale_rewards``, ``beta``
        and ``max_completion_length``, which defaults to the Dr. GRPO budget think + suffix). The
        reference run's variant (std-normalised advantages, mean token log-probs) is
        ``loss_type="grpo"``, ``scale_rewards="group"``.

    Parameters that control judges and monitoring:
        judge_ready_timeout_s, judge_failure_patience, log_rollout_samples, samples_dir,
        enforce_stop_conditions and the ``alert_*`` thresholds, write_metrics_json.
    """

    # Two-stage rollout
    think_max_tokens: int = field(
        default=48, metadata={"help": "Stage-1 budget: at most this many thought tokens are sampled."}
    )
    suffix_max_tokens: int = field(
        default=128, metadata={"help": "Stage-2 budget: at most this many suffix tokens are sampled."}
    )
    boundary_text: str = field(
        default="</think>",
        metadata={
            "help": "Text inserted (not sampled, masked from the loss) between thought and suffix; "
            "must start "
            "with '</think>'. If the policy closes the thought itself, only the rest of it is inserted."
        },
    )
    train_on_autonomous_close: bool = field(
        default=False,
        metadata={
            "help": "Loss weight of a </think> the policy sampled itself: false (default, docs/method.md §4) "
            "gives it weight 0 like the inserted boundary; true trains it, so closing the thought early "
            "becomes a learnable action."
        },
    )
    append_think_open: bool = field(
        default=True,
        metadata={
            "help": "Append ' <think>' to prompts that do not already end with '<think>' (chat prompts get "
            "'<think>\\n' after the generation prompt)."
        },
    )
    # Objective
    prefixes_per_step: int | None = field(
        default=2,
        metadata={
            "help": "Prefixes (groups of num_generations samples) per optimizer step. Sets "
            "gradient_accumulation_steps from per_device_train_batch_size and the number of processes, so "
            "one generation batch is exactly one optimizer step. None: use the GRPO batch fields as given."
        },
    )
    max_completion_length: int | None = field(
        default=None,
        metadata={
            "help": "Dr. GRPO fixed token budget that summed token losses are divided by (TRL's field; the "
            "two-stage rollout never reads it). None: think_max_tokens + suffix_max_tokens (176 with the "
            "defaults)."
        },
    )
    complete_groups_only: bool = field(
        default=True,
        metadata={
            "help": "Drop a whole group from the update (zero advantage and zero loss mask, KL included) "
            "when any of its samples is invalid: every reward function returned None for it, or a judge's "
            "verdict record marks it invalid."
        },
    )
    # Judges
    judge_ready_timeout_s: float = field(
        default=120.0,
        metadata={
            "help": "At train start wait this long for every LLM judge's /v1/models (a clear error naming "
            "the URL otherwise); 0 skips the check."
        },
    )
    judge_failure_patience: int = field(
        default=3,
        metadata={
            "help": "Stop (after saving a checkpoint) when this many consecutive steps had no valid judge "
            "verdict at all; train() then raises JudgeUnavailableError. 0 disables."
        },
    )
    require_fp32_weights: bool = field(
        default=True,
        metadata={
            "help": "Refuse trainable parameters stored in bf16/fp16 outside DeepSpeed: AdamW would update "
            "low-precision weights (at lr 1e-7 almost none change). Load the model in float32 and set "
            "bf16: true for autocast compute."
        },
    )
    # Monitoring
    log_rollout_samples: bool = field(
        default=True,
        metadata={
            "help": "Write step_NNNN_samples.jsonl (prompt id, thought, suffix, reward, validity) "
            "per logged step."
        },
    )
    samples_dir: str | None = field(
        default=None, metadata={"help": "Where the per-step sample files go. None: <output_dir>/samples."}
    )
    enforce_stop_conditions: bool = field(
        default=False,
        metadata={
            "help": "Stop training (after saving a checkpoint) when a stop alert fires. Alerts are always "
            "logged; a non-finite loss, gradient norm or weight always stops (NonFiniteTrainingError)."
        },
    )
    alert_min_available_mem_gib: float = field(default=4.0, metadata={"help": "low_memory alert below this."})
    alert_max_invalid_rate: float = field(
        default=0.05, metadata={"help": "judge_invalid_rate alert above this."}
    )
    alert_max_artifact_rate: float = field(default=0.10, metadata={"help": "artifact_rate alert above this."})
    alert_max_length_growth: float = field(
        default=0.20, metadata={"help": "response_length_growth alert above this (relative to step 1)."}
    )
    alert_max_near_zero_worsening: float = field(
        default=0.20,
        metadata={"help": "near_zero_group_worsened alert when the rate exceeds step 1's by this."},
    )
    alert_max_near_zero_rate: float = field(
        default=0.50, metadata={"help": "near_zero_group_rate alert above this absolute rate."}
    )
    alert_collapse_steps: int = field(
        default=2,
        metadata={"help": "reward_collapsed alert after this many consecutive all-zero/all-one steps."},
    )
    write_metrics_json: bool = field(
        default=True,
        metadata={"help": "Write <output_dir>/metrics.json (RLMT results-table columns)."},
    )
    # GRPO/Trainer fields with docs/method.md §4 defaults
    num_generations: int | None = field(default=16, metadata={"help": "K: samples per prefix (a group)."})
    loss_type: str = field(
        default="dr_grpo",
        metadata={
            "help": "GRPO loss; 'dr_grpo' sums token losses over a fixed budget (max_completion_length)."
        },
    )
    scale_rewards: str = field(
        default="none",
        metadata={
            "help": "'none': centred advantages r - mean (Dr. GRPO); "
            "'group': the reference run's std scaling."
        },
    )
    beta: float = field(
        default=0.02, metadata={"help": "k3 KL coefficient against the frozen initial (SFT) model."}
    )
    learning_rate: float = field(default=1e-7, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=0.1, metadata={"help": "Gradient clipping norm."})
    warmup_steps: float = field(default=2, metadata={"help": "Linear warmup steps."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Schedule after warmup (cosine to 0)."}
    )
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling for both rollout stages."})

    def __post_init__(self):
        if self.think_max_tokens < 1 or self.suffix_max_tokens < 1:
            raise ValueError("think_max_tokens and suffix_max_tokens must be ≥ 1")
        if not self.boundary_text.startswith("</think>"):
            raise ValueError(f"boundary_text must start with '</think>', got {self.boundary_text!r}")
        if self.max_completion_length is None:
            self.max_completion_length = self.think_max_tokens + self.suffix_max_tokens
        if self.max_completion_length < 1:
            raise ValueError(f"max_completion_length must be ≥ 1, got {self.max_completion_length}")
        if self.judge_failure_patience < 0 or self.judge_ready_timeout_s < 0:
            raise ValueError("judge_failure_patience and judge_ready_timeout_s must be ≥ 0")
        if self.prefixes_per_step is not None:
            self._derive_accumulation()
        super().__post_init__()
        if self.prefixes_per_step is not None:
            expected = self.prefixes_per_step * self.num_generations
            if (
                self.generation_batch_size != expected
                or self.steps_per_generation != self.gradient_accumulation_steps
            ):
                raise ValueError(
                    f"prefixes_per_step={self.prefixes_per_step} needs a generation batch of "
                    f"{expected} samples "
                    f"per optimizer step, got generation_batch_size={self.generation_batch_size} with "
                    f"steps_per_generation={self.steps_per_generation}, gradient_accumulation_steps="
                    f"{self.gradient_accumulation_steps}; set prefixes_per_step: null to use the GRPO "
                    "batch fields"
                )

    def _derive_accumulation(self) -> None:
        # Set before GRPOConfig.__post_init__ derives generation_batch_size from it. WORLD_SIZE is set by
        # accelerate launch / torchrun for every process; a plain python run is one process.
        world = int(os.environ.get("WORLD_SIZE", "1"))
        samples = self.prefixes_per_step * self.num_generations
        per_process, rest = divmod(samples, world)
        if rest or per_process % self.per_device_train_batch_size:
            raise ValueError(
                f"prefixes_per_step × num_generations = {samples} samples must split evenly over {world} "
                f"process(es) × per_device_train_batch_size={self.per_device_train_batch_size}"
            )
        if self.generation_batch_size is not None or self.steps_per_generation is not None:
            raise ValueError(
                "prefixes_per_step sets the generation batch; leave generation_batch_size and "
                "steps_per_generation unset (or set prefixes_per_step: null)"
            )
        self.gradient_accumulation_steps = per_process // self.per_device_train_batch_size

    @property
    def alert_thresholds(self) -> AlertThresholds:
        return AlertThresholds(
            min_available_mem_gib=self.alert_min_available_mem_gib,
            max_invalid_rate=self.alert_max_invalid_rate,
            max_artifact_rate=self.alert_max_artifact_rate,
            max_length_growth=self.alert_max_length_growth,
            max_near_zero_worsening=self.alert_max_near_zero_worsening,
            max_near_zero_rate=self.alert_max_near_zero_rate,
            collapse_steps=self.alert_collapse_steps,
        )


class RLMTRunState(TrainerCallback, ExportableState):
    """RLMT run state: alert baselines and streaks, the judge-failure streak, the count of steps without a
    valid verdict, and a pending stop.

    The resumable part (alerts, missing-reward count) is an ``ExportableState``: saved into every
    checkpoint's ``trainer_state.json`` and restored in ``on_train_begin`` whether or not
    ``restore_callback_states_from_checkpoint`` is set (with it set, transformers rebuilds this callback
    from ``args``; the trainer finds the live instance through its callback list). A stop reason and the
    judge-failure streak are not restored: a resume is a deliberate restart. A stop becomes
    ``should_save`` + ``should_training_stop`` at the end of the step.
    """

    def __init__(self, thresholds: dict[str, Any] | None = None):
        self.tracker = AlertTracker(AlertThresholds(**(thresholds or {})))
        self.missing_reward_steps = 0
        self.judge_failure_streak = 0
        self.stop_reason: str | None = None
        self.stop_message: str | None = None

    @property
    def tracker_state(self) -> dict[str, Any]:
        return self.tracker.state_dict()

    @tracker_state.setter
    def tracker_state(self, value: dict[str, Any]) -> None:
        self.tracker.load_state_dict(value)

    def state(self) -> dict[str, Any]:
        return {
            "args": {"thresholds": asdict(self.tracker.thresholds)},
            "attributes": {
                "tracker_state": self.tracker_state,
                "missing_reward_steps": self.missing_reward_steps,
            },
        }

    def stop(self, reason: str, message: str | None = None) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message

    def on_train_begin(self, args, state, control, **kwargs):
        key = type(self).__name__
        stored = state.stateful_callbacks.get(key)
        if isinstance(stored, dict) and state.global_step > 0:
            for name, value in stored.get("attributes", {}).items():
                setattr(self, name, value)
        if stored is None:  # a checkpoint from before this callback: transformers indexes the key at saves
            state.stateful_callbacks[key] = self.state()

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_reason is not None:
            control.should_save = True
            control.should_training_stop = True
        return control


class ThinkingGRPOTrainer(GRPOTrainer):
    """
    [`~trl.GRPOTrainer`] with RLMT's two-stage external-boundary rollout and suffix-only rewards.

    Example:

    ```python
    from trl_ext import ThinkingGRPOConfig, ThinkingGRPOTrainer
    from trl_ext.judges import LLMJudge

    trainer = ThinkingGRPOTrainer(
        model="path/to/think_sft_checkpoint",
        reward_funcs=[LLMJudge.pointwise(base_url="http://127.0.0.1:30000")],
        args=ThinkingGRPOConfig(output_dir="rlmt", think_max_tokens=48, suffix_max_tokens=128),
        train_dataset=rl_rows,  # columns: prompt (ends with " <think>"), prefix, reference
    )
    trainer.train()
    ```

    Each prompt gets K samples of ``thought (≤think_max_tokens) | inserted boundary | suffix
    (≤suffix_max_tokens)`` from [`trl_ext.rollout.two_stage_generate`]; inserted tokens are masked
    from the loss through ``env_mask``; reward functions receive only the suffix (text and ids).
    The constructor is GRPOTrainer's; ``rollout_func`` is supplied by this class.
    """

    _tag_names = ["trl", "grpo", "trl_ext", "rlmt"]

    def __init__(self, model, reward_funcs=None, args: ThinkingGRPOConfig | None = None, *pargs, **kwargs):
        if kwargs.get("rollout_func") is not None:
            raise ValueError("ThinkingGRPOTrainer supplies its own rollout_func (the two-stage rollout)")
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = ThinkingGRPOConfig(f"{str(name).split('/')[-1]}-RLMT")
        elif not isinstance(args, ThinkingGRPOConfig):
            raise TypeError(f"args must be a ThinkingGRPOConfig, got {type(args).__name__}")
        self._pending_rollouts: list[Rollout] = []
        self._dropped_local_rows: list[int] = []
        super().__init__(model, reward_funcs, args, *pargs, rollout_func=self._two_stage_rollout, **kwargs)
        require_fp32_trainable_weights(self)
        self.think_close_id = self._tokenizer.convert_tokens_to_ids("</think>")
        self.add_callback(RLMTRunState(asdict(args.alert_thresholds)))
        self.throughput = ThroughputMemoryCallback()
        self.add_callback(self.throughput)
        self.metrics_json: MetricsJsonCallback | None = None
        if args.write_metrics_json and self.accelerator.is_main_process:
            summary = {col: _summarise(kind, key) for col, (kind, key) in RLMT_TABLE_COLUMNS.items()}
            self.metrics_json = MetricsJsonCallback(
                args.output_dir, summary=summary, extra={"stopped_reason": None}
            )
            self.add_callback(self.metrics_json)
        self._add_judge_stats_callback()
        self.non_finite_guard = NonFiniteGuard.install(self, metrics_json=self.metrics_json)

    # ------------------------------------------------------------------------------------ run state
    @property
    def run_state(self) -> RLMTRunState:
        """The live :class:`RLMTRunState` (transformers may replace the instance on resume)."""
        return next(cb for cb in self.callback_handler.callbacks if isinstance(cb, RLMTRunState))

    @property
    def alerts(self) -> AlertTracker:
        return self.run_state.tracker

    @property
    def stop_reason(self) -> str | None:
        return self.run_state.stop_reason

    def _stop(self, reason: str, message: str | None = None) -> None:
        self.run_state.stop(reason, message)
        if self.metrics_json is not None and self.metrics_json.extra.get("stopped_reason") is None:
            self.metrics_json.extra["stopped_reason"] = reason

    def _add_judge_stats_callback(self) -> None:
        """Judge counters saved with each checkpoint and restored on resume (``judge_stats.json``)."""
        from trl_ext.judges.stats import JudgeStatsCallback, judges_with_stats

        present = any(isinstance(cb, JudgeStatsCallback) for cb in self.callback_handler.callbacks)
        if not present and judges_with_stats(self.reward_funcs):
            self.add_callback(JudgeStatsCallback(self.reward_funcs))

    def train(self, *args, **kwargs):
        """``GRPOTrainer.train`` after waiting for the judges; raises :class:`JudgeUnavailableError` when
        the run stopped because the judge gave no valid verdict for ``judge_failure_patience`` steps."""
        self._wait_for_judges()
        output = super().train(*args, **kwargs)
        state = self.run_state
        if state.stop_reason == "judge_failure":
            raise JudgeUnavailableError(
                state.stop_message or "judge failure",
                step=self.state.global_step,
                reason="judge_failure",
                last_good_checkpoint=last_checkpoint(self.args.output_dir),
            )
        return output

    def _wait_for_judges(self) -> None:
        timeout = self.args.judge_ready_timeout_s
        if not timeout:
            return
        for func in self.reward_funcs:
            try:
                if callable(getattr(func, "wait_until_ready", None)):
                    func.wait_until_ready(timeout_s=timeout)
                elif getattr(getattr(func, "client", None), "base_urls", None):
                    for url in func.client.base_urls:
                        wait_until_ready(url, func.client.model, timeout_s=timeout)
            except TimeoutError as err:
                name = getattr(func, "__name__", type(func).__name__)
                raise JudgeUnavailableError(
                    f"judge {name!r} is not ready: {err}. Start the judge server (docs/rlmt.md, Recipes) or "
                    "fix judge_base_urls; judge_ready_timeout_s: 0 skips this check",
                    step=self.state.global_step,
                    reason="judge_not_ready",
                    last_good_checkpoint=last_checkpoint(self.args.output_dir),
                ) from None

    # ------------------------------------------------------------------------------------------ rollout
    def _encode_prompt(self, prompt: Any) -> list[int]:
        if is_conversational({"prompt": prompt}):
            text = maybe_apply_chat_template(
                {"prompt": prompt}, self._tokenizer, **self.chat_template_kwargs
            )["prompt"]
            opener = "<think>\n"
        else:
            text, opener = prompt, " " + THINK_OPEN
        if self.args.append_think_open and not text.rstrip().endswith(THINK_OPEN):
            text = text.rstrip() + opener
        return self._tokenizer.encode(text, add_special_tokens=False)

    def _generation_kwargs(self) -> dict[str, Any]:
        """TRL's own generation settings (``GRPOTrainer.generation_kwargs``: do_sample, temperature, top_p,
        top_k, min_p, repetition_penalty, cache_implementation, and the user's ``generation_kwargs``) for
        both stages, minus what each stage sets itself (budget and stop ids) and the pad/bos ids."""
        per_stage = ("max_new_tokens", "max_length", "eos_token_id", "pad_token_id", "bos_token_id")
        return {k: v for k, v in self.generation_kwargs.items() if k not in per_stage and v is not None}

    def _two_stage_rollout(self, prompts: list, trainer: GRPOTrainer) -> dict[str, Any]:
        if self.use_vllm:
            raise NotImplementedError(
                "ThinkingGRPOTrainer's two-stage rollout runs on the transformers generate path; "
                "set use_vllm=False"
            )
        start_time = time.perf_counter()
        prompt_ids = [self._encode_prompt(p) for p in prompts]
        summon = getattr(getattr(self, "_dist", None), "summon_full_params", None)
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,  # as TRL: overrides the model's generation_config
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped,
            torch.no_grad(),
            summon(self.model_wrapped, recurse=False) if summon else contextlib.nullcontext(),
        ):
            rollouts = two_stage_generate(
                unwrapped,
                self._tokenizer,
                prompt_ids,
                self.args.think_max_tokens,
                self.args.suffix_max_tokens,
                boundary_text=self.args.boundary_text,
                eos_token_ids=self.eos_token_ids,
                train_on_autonomous_close=self.args.train_on_autonomous_close,
                **self._generation_kwargs(),
            )
        self._pending_rollouts = rollouts
        self._rollout_time_s = time.perf_counter() - start_time
        return {
            "prompt_ids": [r.prompt_ids for r in rollouts],
            "completion_ids": [r.completion_ids for r in rollouts],
            "logprobs": None,  # only the vLLM importance-sampling correction reads them
            "env_mask": [r.loss_mask for r in rollouts],  # → tool_mask → multiplied into every loss mask
        }

    # ------------------------------------------------------------------------------------------ rewards
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards on the suffix, plus RLMT's validity: a sample is invalid when every reward function
        returned None for it (TRL's "unscorable"; one None among several means "does not apply" and the
        others are summed, as in TRL) or when a judge's verdict record (``last_verdicts``) marks it invalid.
        Invalid samples get NaN in every column, so TRL gives them zero advantage and leaves them out of
        the group baseline; with ``complete_groups_only`` their whole group is dropped."""
        rollouts = self._pending_rollouts
        if len(rollouts) != len(prompts):
            raise RuntimeError(
                f"{len(rollouts)} rollouts for {len(prompts)} prompts (rollout/reward out of sync)"
            )
        conversational = is_conversational({"prompt": prompts[0]})
        suffixes = [
            [{"role": "assistant", "content": r.suffix_text}] if conversational else r.suffix_text
            for r in rollouts
        ]
        for func in self.reward_funcs:
            if hasattr(func, "last_verdicts"):
                func.last_verdicts = (
                    None  # a judge that is not called this step must not leave stale verdicts
                )
        start_time = time.perf_counter()
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, suffixes, [r.suffix_ids for r in rollouts]
        )
        self._judge_time_s = time.perf_counter() - start_time
        mode = "train" if self.model.training else "eval"
        k = self.num_generations if mode == "train" else self.num_generations_eval
        judged_invalid = torch.tensor(
            [float(_judge_error(self.reward_funcs, i) is not None) for i in range(len(prompts))],
            device=rewards_per_func.device,
        )
        invalid = torch.isnan(rewards_per_func).all(dim=1) | (self.accelerator.gather(judged_invalid) > 0)
        weights = self.reward_weights.to(rewards_per_func.device)
        scores = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        scores[invalid] = torch.nan
        self._record_step(mode, k, scores.tolist(), inputs, rollouts)
        rewards_per_func = rewards_per_func.clone()
        rewards_per_func[invalid] = torch.nan  # → advantage 0 and out of the baseline (TRL's unscorable)
        self._dropped_local_rows = []
        if self.args.complete_groups_only and invalid.any():
            dropped = invalid.view(-1, k).any(dim=1).repeat_interleave(k)
            rewards_per_func[dropped] = torch.nan  # → advantage 0 (TRL) and loss mask 0 (below)
            start = self.accelerator.process_index * len(prompts)
            self._dropped_local_rows = [
                i - start for i in dropped.nonzero().flatten().tolist() if start <= i < start + len(prompts)
            ]
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self._dropped_local_rows:
            # Incomplete groups contribute nothing, not even KL: the reference run's pre-update gate.
            output["tool_mask"] = output["tool_mask"].clone()
            output["tool_mask"][self._dropped_local_rows] = 0
            self._dropped_local_rows = []
        # TRL counted the loss tokens before the drop; dapo/cispo/vespo divide by this count, so recount
        # (on every rank: it is a collective) or the kept groups' loss is scaled down.
        loss_mask = output["completion_mask"] * output["tool_mask"]
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return output

    # ------------------------------------------------------------------------------------------ metrics
    def _record_step(
        self, mode: str, k: int, scores: list[float], inputs: list[dict], rollouts: list[Rollout]
    ) -> None:
        local = [
            {
                "prompt_id": str(x.get("id", "")),
                "thought": r.thought_text,
                "suffix": r.suffix_text,
                "thought_tokens": len(r.thought_ids),
                "suffix_tokens": len(r.suffix_ids),
                "closed_by_model": r.closed_by_model,
                "stop_reason": r.stop_reason,
                "judge_error": _judge_error(self.reward_funcs, i),
            }
            for i, (x, r) in enumerate(zip(inputs, rollouts))
        ]
        records = gather_object(local)
        samples = [
            GroupSample(
                score=None if math.isnan(s) else s,
                thought=rec["thought"],
                suffix=rec["suffix"],
                new_tokens=rec["thought_tokens"] + rec["suffix_tokens"],
            )
            for s, rec in zip(scores, records)
        ]
        groups = [samples[i : i + k] for i in range(0, len(samples), k)]
        metrics = group_stats(groups)
        metrics["autonomous_closed_think_rate"] = sum(r["closed_by_model"] for r in records) / max(
            len(records), 1
        )
        metrics["avg_thought_tokens"] = sum(r["thought_tokens"] for r in records) / max(len(records), 1)
        metrics["avg_suffix_tokens"] = sum(r["suffix_tokens"] for r in records) / max(len(records), 1)
        metrics["rollout_time_s"] = getattr(self, "_rollout_time_s", 0.0)
        metrics["judge_time_s"] = getattr(self, "_judge_time_s", 0.0)
        step = self.state.global_step + 1
        if mode == "train":
            metrics["length_drift"] = self.alerts.length_drift(metrics["avg_total_new_tokens"])
            alerts = self.alerts.update(step, metrics, available_memory_gib())
            metrics["stop_alerts"] = float(len(alerts))
            for alert in alerts if self.accelerator.is_main_process else []:
                logger.warning("RLMT stop alert at step %d: %s", step, alert)
            if alerts and self.args.enforce_stop_conditions:
                self._stop(alert_name(alerts[0]))
            self._track_judge_failures(step, math.isnan(metrics["reward_mean"]))
            metrics["missing_reward_steps"] = float(self.run_state.missing_reward_steps)
        for name, value in metrics.items():
            self._metrics[mode][name].append(float(value))
        logging_step = step == 1 or step % max(int(self.args.logging_steps), 1) == 0
        if (
            self.args.log_rollout_samples
            and mode == "train"
            and logging_step
            and self.accelerator.is_main_process
        ):
            self._write_samples(step, records, scores, k)

    def _track_judge_failures(self, step: int, missing: bool) -> None:
        """A step with no valid verdict has a missing reward (logged as NaN → None, left out of the
        means); ``judge_failure_patience`` such steps in a row stop the run with a checkpoint."""
        state = self.run_state
        state.missing_reward_steps += int(missing)
        state.judge_failure_streak = state.judge_failure_streak + 1 if missing else 0
        patience = self.args.judge_failure_patience
        if patience and state.judge_failure_streak >= patience:
            reasons: dict[str, int] = {}
            for func in self.reward_funcs:
                reasons.update(dict(getattr(getattr(func, "stats", None), "reasons", None) or {}))
            message = (
                f"no valid judge verdict in {state.judge_failure_streak} consecutive steps (up to step "
                f"{step}; invalid reasons so far: {reasons or 'see judge_invalid*.jsonl'}); is the judge "
                f"server up? Training stopped with a checkpoint at step {step}; fix the judge and resume "
                "(judge_failure_patience: 0 disables this check)"
            )
            if state.stop_reason is None and self.accelerator.is_main_process:
                logger.error(message)
            self._stop("judge_failure", message)

    def _write_samples(self, step: int, records: list[dict], scores: list[float], k: int) -> None:
        directory = Path(self.args.samples_dir or Path(self.args.output_dir) / "samples")
        path = directory / f"step_{step:04d}_samples.jsonl"
        if path.exists():  # a resumed run regenerates this step: keep one file per step
            path.unlink()
        for index, (record, score) in enumerate(zip(records, scores)):
            valid = not math.isnan(score)
            row = {"step": step, "group": index // k, "sample": index % k, **record}
            append_row(path, {**row, "reward": score if valid else None, "valid": valid})


def _judge_error(reward_funcs: list, index: int) -> str | None:
    """The first invalid-verdict reason among judges that keep their verdicts of the last call in
    ``last_verdicts`` (LLMJudge does); None when every such judge found sample ``index`` valid."""
    for func in reward_funcs:
        verdicts = getattr(func, "last_verdicts", None)
        if verdicts is not None and index < len(verdicts) and not verdicts[index].valid:
            return verdicts[index].error or "invalid"
    return None


def _summarise(kind: str, key: str):
    def summary(history: list[dict]) -> float:
        values = [r[key] for r in history if r.get(key) is not None]
        return sum(values) / len(values) if kind == "mean" else values[-1]

    return summary
