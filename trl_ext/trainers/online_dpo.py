"""K-way full-pairwise online DPO for self-improving continued pretraining (docs/method.md §2).

``SelfImprovingOnlineDPOTrainer`` subclasses TRL 1.16's ``OnlineDPOTrainer``
(``trl.experimental.online_dpo``),
keeps its constructor signature and replaces ``training_step``, because the parent hard-codes two generations
per
prompt and a half-vs-half pairing (TRL 1.16 ``online_dpo_trainer.py`` L372, L1222). Per prefix:

1. candidates = the original suffix ("pivot") + K policy rollouts (+ an optional rewrite column);
2. every unordered pair is judged (or each rollout vs the pivot only, ``judging_mode="pivot"``), with a seeded
   A/B swap per call and optional repeats; a candidate's score is its share of won votes;
3. chosen = argmax, rejected = argmin, ties broken by a seeded random permutation, all-tie prefixes
   skipped and counted;
4. loss = DPO sigmoid (β=0.1) on log-probs *summed* over candidate tokens (prefix masked) against the frozen
   reference, or RF-NLL (NLL on the chosen candidate only).

With ``think_mode=True`` rollouts use the two-stage external-boundary sampler of :mod:`trl_ext.rollout`
(thought | inserted ``</think>`` | suffix): the boundary is masked from the loss and the judge reads suffixes
only.

TRL internals relied on (checked by ``tests/test_online_dpo.py::test_trl_contract``): ``self.stats`` and
``_maybe_log_save_evaluate`` averaging it, ``self.ref_model`` (``None`` under PEFT), ``self.beta``,
``self.eos_token_ids``, ``self._tokenizer`` and ``_calculate_rewards_from_functions`` for pointwise reward
funcs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import DistributedType, is_peft_model, set_seed
from transformers import GenerationConfig, PreTrainedModel
from transformers.integrations.deepspeed import (
    is_deepspeed_zero3_enabled,
    set_hf_deepspeed_config,
    unset_hf_deepspeed_config,
)
from trl.data_utils import apply_chat_template, is_conversational
from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import create_model_from_path, get_config_model_id

from trl_ext.callbacks import MetricsJsonCallback, ThroughputMemoryCallback, column_last, column_mean
from trl_ext.client import wait_until_ready
from trl_ext.judges.base import JudgeVerdict
from trl_ext.judges.pairwise import LikelihoodPairwiseJudge, LLMPairwiseJudge, PairwiseJudge, winner_of
from trl_ext.judges.stats import JudgeStatsCallback, judges_with_stats
from trl_ext.logprobs import configure_chunks, ensure_fused_lm_head, sequence_logprobs
from trl_ext.pairing import (
    JUDGING_MODES,
    PoolRecord,
    PoolScores,
    expected_num_calls,
    plan_comparisons,
    pool_rng,
    score_pool,
    select_pair,
    summarize_pools,
    tie_order,
)
from trl_ext.rollout import cut_at_stop, left_pad
from trl_ext.training_guards import NonFiniteGuard, require_fp32_trainable_weights

logger = logging.getLogger(__name__)


def phase3_summary_columns() -> dict:
    """``metrics.json`` summary columns of a phase3 run (means over logged steps, plus final values)."""
    means = ("chosen_is_rollout_rate", "rollout_pointwise_mean", "pivot_pointwise_mean", "judge_invalid_rate")
    return {key: column_mean(key) for key in means} | {
        "final_chosen_is_rollout_rate": column_last("chosen_is_rollout_rate"),
        "tokens_seen": column_last("tokens_seen"),
    }


@dataclass
class SelfImprovingOnlineDPOConfig(OnlineDPOConfig):
    r"""Configuration for [`SelfImprovingOnlineDPOTrainer`]: the fields the method adds to `OnlineDPOConfig`.

    Parameters that control the candidate pool:
        num_rollouts, include_pivot, rewrite_column, rollouts_stop_at_eos (with the parent's `temperature`,
        `top_p` and `max_new_tokens`, defaults 1.0 / 1.0 / 128)
    Parameters that control judging:
        judging_mode, judge_repeats, judge, judge_base_urls, judge_model, judge_prompt, judge_temperature,
        judge_top_p, judge_max_tokens, judge_max_concurrency, judge_timeout_s, judge_max_retries,
        judge_scorer_model
    Parameters that control the loss:
        objective (with the parent's `beta` = 0.1 and `loss_type` = "sigmoid"), logprob_chunked,
        logprob_token_chunk, logprob_vocab_chunk, logprob_micro_batch_size
    Parameters of the two-stage think mode:
        think_mode, think_max_tokens
    Data columns and records:
        prefix_column, suffix_column, id_column, pool_audit, metrics_json
    """

    # Overridden parent defaults (docs/method.md §2)
    learning_rate: float = field(
        default=5e-6, metadata={"help": "Peak AdamW learning rate (reference: 5e-6)."}
    )
    temperature: float = field(
        default=1.0, metadata={"help": "Rollout sampling temperature (docs/method.md: 1.0)."}
    )
    max_new_tokens: int = field(
        default=128,
        metadata={"help": "New tokens per rollout (and per suffix in think mode); docs/method.md: 128."},
    )
    max_length: int = field(
        default=1024,
        metadata={
            "help": "Max prefix+candidate tokens in the log-prob pass; the prefix is truncated on the left."
        },
    )

    num_rollouts: int = field(
        default=16, metadata={"help": "K: policy rollouts per prefix (pool = pivot + K)."}
    )
    include_pivot: bool = field(
        default=True, metadata={"help": "Put the original suffix (the 'pivot') into the pool as a candidate."}
    )
    rewrite_column: str | None = field(
        default=None,
        metadata={
            "help": "Optional dataset column with a teacher rewrite (token ids or text) added as a candidate."
        },
    )
    rollouts_stop_at_eos: bool = field(
        default=False,
        metadata={
            "help": "False (reference run): EOS is suppressed, every rollout has exactly max_new_tokens "
            "tokens; True: rollouts end at EOS. Lengths are logged either way (rollout_len_mean, "
            "pivot_len_mean). Think mode: suffixes end at EOS (the two-stage sampler's behaviour)."
        },
    )
    judging_mode: str = field(
        default="full",
        metadata={
            "help": "'full': every unordered pair, N(N-1)/2 calls (136 for 17); 'pivot': each candidate vs "
            "the "
            "original suffix only, N-1 calls (cheaper, worse).",
            "choices": list(JUDGING_MODES),
        },
    )
    judge_repeats: int = field(
        default=1, metadata={"help": "Votes per pair; a score is then a vote fraction."}
    )
    judge: str = field(
        default="llm",
        metadata={
            "help": "Judge built when no judge is passed as reward_funcs: 'llm' (OpenAI-compatible endpoint, "
            "judge_* fields) or 'likelihood' (offline: a frozen LM's mean log-likelihood, for CPU runs).",
            "choices": ["llm", "likelihood"],
        },
    )
    judge_base_urls: list[str] | None = field(
        default=None, metadata={"help": "Judge server URLs (round-robin), e.g. http://127.0.0.1:30000."}
    )
    judge_model: str = field(default="default", metadata={"help": "Model name the judge server serves."})
    judge_prompt: str = field(
        default="pairwise_quality",
        metadata={"help": "Pairwise prompt: a name in trl_ext/judges/prompts or a path to a .txt template."},
    )
    judge_temperature: float = field(
        default=0.7, metadata={"help": "Judge sampling temperature (reference 0.7)."}
    )
    judge_top_p: float = field(default=0.6, metadata={"help": "Judge top_p (reference 0.6)."})
    judge_max_tokens: int = field(
        default=256,
        metadata={"help": "Judge reply budget; too small and the conclusion line is cut (invalid)."},
    )
    judge_max_concurrency: int = field(default=64, metadata={"help": "Judge requests in flight per process."})
    judge_timeout_s: float = field(default=60.0, metadata={"help": "Per-request judge timeout in seconds."})
    judge_max_retries: int = field(
        default=2, metadata={"help": "Retries per judge request (5xx, timeouts, junk)."}
    )
    judge_ready_timeout_s: float = field(
        default=120.0,
        metadata={"help": "Wait this long at start for every judge URL's /health and /v1/models (0: skip)."},
    )
    judge_failure_patience: int = field(
        default=3,
        metadata={
            "help": "Abort after this many consecutive micro-batches in which every judge call was invalid "
            "(server down or a prompt it cannot answer); 0 disables. Resume from the last checkpoint."
        },
    )
    judge_scorer_model: str | None = field(
        default=None,
        metadata={"help": "Scorer LM for judge='likelihood'; default: the policy's initial checkpoint path."},
    )
    objective: str = field(
        default="dpo",
        metadata={
            "help": "'dpo': DPO on (chosen, rejected) with the parent's loss_type/beta; 'rf_nll': NLL on the "
            "chosen candidate only (no reference model pass).",
            "choices": ["dpo", "rf_nll"],
        },
    )
    logprob_chunked: bool = field(
        default=True,
        metadata={
            "help": "Chunked LM head for log-probs (no full-vocabulary log-softmax); False = TRL's way."
        },
    )
    logprob_token_chunk: int = field(
        default=1024, metadata={"help": "Tokens per tile of the chunked LM head."}
    )
    logprob_vocab_chunk: int = field(default=8192, metadata={"help": "Vocabulary entries per tile."})
    logprob_micro_batch_size: int | None = field(
        default=None,
        metadata={"help": "Rows per forward in the log-prob pass (None: all chosen+rejected at once)."},
    )
    think_mode: bool = field(
        default=False,
        metadata={
            "help": "Two-stage rollouts (thought <= think_max_tokens | inserted </think> | suffix <= "
            "max_new_tokens); "
            "boundary masked, judge sees suffixes only: the DPO flavour of RLMT."
        },
    )
    think_max_tokens: int = field(default=48, metadata={"help": "Thought budget in think mode."})
    think_open_text: str = field(
        default=" <think>",
        metadata={
            "help": "Appended to every prefix in think mode (docs/method.md §4: text before + ' <think>')."
        },
    )
    think_boundary_text: str = field(
        default="</think>",
        metadata={
            "help": "Inserted (never sampled, masked) between thought and suffix; starts with </think>."
        },
    )
    prefix_column: str = field(
        default="prefix_ids", metadata={"help": "Dataset column with the prefix (token ids or text)."}
    )
    suffix_column: str = field(
        default="suffix_ids",
        metadata={"help": "Dataset column with the original suffix (token ids or text)."},
    )
    id_column: str = field(
        default="id", metadata={"help": "Dataset column with a stable row id (seeds the swaps)."}
    )
    pool_audit: bool = field(
        default=False,
        metadata={
            "help": "Append every pool (scores, chosen, rejected) to <output_dir>/pool_audit.rank<R>.jsonl."
        },
    )
    metrics_json: bool = field(
        default=True,
        metadata={"help": "Write <output_dir>/metrics.json (all logged metrics + summary) at the end."},
    )
    require_fp32_weights: bool = field(
        default=True,
        metadata={
            "help": "Refuse trainable parameters stored in bf16/fp16 outside DeepSpeed: AdamW would update "
            "low-precision weights (at lr 1e-7 almost none change). Load the model in float32 and set "
            "bf16: true for autocast compute."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.num_rollouts < 1:
            raise ValueError(f"num_rollouts must be >= 1, got {self.num_rollouts}")
        if self.judging_mode not in JUDGING_MODES:
            raise ValueError(f"judging_mode must be one of {JUDGING_MODES}, got {self.judging_mode!r}")
        if self.judging_mode == "pivot" and not self.include_pivot:
            raise ValueError("judging_mode='pivot' needs include_pivot=True (rollouts are judged against it)")
        if self.judge_repeats < 1:
            raise ValueError(f"judge_repeats must be >= 1, got {self.judge_repeats}")
        if self.objective not in ("dpo", "rf_nll"):
            raise ValueError(f"objective must be 'dpo' or 'rf_nll', got {self.objective!r}")
        for key, use in self._generation_keys_set_elsewhere().items():
            if key in (self.generation_kwargs or {}):
                raise ValueError(f"generation_kwargs[{key!r}] is set by the trainer; {use}")
        if self.missing_eos_penalty is not None and not (self.rollouts_stop_at_eos or self.think_mode):
            raise ValueError(
                "missing_eos_penalty needs rollouts_stop_at_eos=True: with it False, EOS is suppressed and "
                "every rollout has exactly max_new_tokens tokens, so every rollout would be penalised"
            )

    def _generation_keys_set_elsewhere(self) -> dict[str, str]:
        """``generation_kwargs`` keys the pool sampler sets itself, and the field that controls each."""
        budget = "use think_max_tokens / max_new_tokens" if self.think_mode else "use max_new_tokens"
        keys = {
            "max_new_tokens": budget,
            "max_length": budget,
            "eos_token_id": "rollouts end at the model's and tokenizer's EOS ids",
            "num_return_sequences": "use num_rollouts",
        }
        if not self.rollouts_stop_at_eos or self.think_mode:
            keys["min_new_tokens"] = "it pins the rollout length; see rollouts_stop_at_eos"
        return keys


@contextmanager
def _whole_model_loading(args: SelfImprovingOnlineDPOConfig) -> Iterator[None]:
    """``from_pretrained`` without ZeRO-3 partitioning, for a small frozen model every rank holds whole
    (the offline judge's scorer): a partitioned model outside a DeepSpeed engine has empty weights, and
    wrapping it in an engine would make every judge call a collective that all ranks must match."""
    # TrainingArguments holds the live DeepSpeed config object itself (--deepspeed) or through the plugin
    # (accelerate launch); it is what transformers' ZeRO-3 switch points to.
    plugin = getattr(args, "deepspeed_plugin", None)
    config = getattr(args, "hf_deepspeed_config", None) or getattr(plugin, "dschf", None)
    if config is None or not is_deepspeed_zero3_enabled():
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        set_hf_deepspeed_config(config)


@dataclass
class Candidate:
    """One pool member: ``ids`` follow the prompt; ``score_mask`` is 0 on inserted (unsampled) tokens."""

    kind: str  # "pivot" | "rollout" | "rewrite"
    ids: list[int]
    score_mask: list[int]
    judge_ids: list[int]
    closed_by_model: bool | None = None
    thought_len: int = 0


def collate_rows(features: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows → columns, untouched: token-id lists stay lists (the trainer pads them itself)."""
    return {key: [f[key] for f in features] for key in features[0]}


class SelfImprovingOnlineDPOTrainer(OnlineDPOTrainer):
    """Online DPO with a K-way candidate pool judged pairwise (self-improving pretraining, docs/method.md §2).

    Example:

    ```python
    from trl_ext import SelfImprovingOnlineDPOConfig, SelfImprovingOnlineDPOTrainer
    from trl_ext.judges.pairwise import LLMPairwiseJudge

    rows = Dataset.from_list([{"id": ..., "prefix_ids": [...], "suffix_ids": [...]}, ...])
    trainer = SelfImprovingOnlineDPOTrainer(
        model="Qwen/Qwen3-0.6B-Base",
        processing_class=tokenizer,
        train_dataset=rows,
        reward_funcs=LLMPairwiseJudge(base_url=["http://judge:30000"]),
        args=SelfImprovingOnlineDPOConfig(output_dir="out", num_rollouts=16, judging_mode="full", beta=0.1),
    )
    trainer.train()
    ```

    ``reward_funcs`` may be a pairwise judge (anything with ``judge_pairs``), ordinary TRL pointwise reward
    functions (each candidate's score is then its reward; they are called with ``prompts``, ``completions``,
    ``completion_ids`` and ``reference`` = the original suffix), or ``None`` (the judge is then built from
    the ``judge*`` config fields).
    """

    _tag_names = ["trl", "online-dpo", "trl_ext", "self-improving-pretraining"]

    def __init__(self, model, ref_model=None, reward_funcs=None, args=None, data_collator=None, **kwargs):
        if args is None:
            raise ValueError("`args` (a SelfImprovingOnlineDPOConfig) must be provided")
        if not isinstance(args, SelfImprovingOnlineDPOConfig):
            raise TypeError(f"args must be a SelfImprovingOnlineDPOConfig, got {type(args).__name__}")
        if args.use_vllm:
            raise NotImplementedError("use_vllm: K-way generation goes through transformers generate here")
        funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs] if reward_funcs else []
        judges = [f for f in funcs if isinstance(f, PairwiseJudge)]
        if judges and len(funcs) > 1:
            raise ValueError("pass either one pairwise judge or pointwise reward funcs, not both")
        if not funcs:
            judges = [self._judge_from_config(args, model, kwargs.get("processing_class"))]
            funcs = judges
        self.pairwise_judge: PairwiseJudge | None = judges[0] if judges else None
        peft = kwargs.get("peft_config") is not None or (not isinstance(model, str) and is_peft_model(model))
        if ref_model is None and not peft and is_deepspeed_zero3_enabled():
            # TRL 1.16's OnlineDPOTrainer deep-copies the policy into the reference, which ZeRO-3 refuses (a
            # partitioned model cannot be copied): load it from the policy's checkpoint, as TRL's DPO does.
            ref_model = self.reference_from_checkpoint(model, args)
        super().__init__(
            model,
            ref_model=ref_model,
            reward_funcs=funcs,
            args=args,
            data_collator=data_collator or collate_rows,
            **kwargs,
        )
        require_fp32_trainable_weights(self)
        if not reward_funcs and isinstance(self.pairwise_judge, LikelihoodPairwiseJudge):
            self.pairwise_judge.model.to(
                self.accelerator.device
            )  # the scorer we built runs next to the policy
        if isinstance(self.pairwise_judge, LLMPairwiseJudge) and args.judge_ready_timeout_s > 0:
            # Fail before training rather than train on nothing but invalid verdicts.
            for url in self.pairwise_judge.client.base_urls:
                wait_until_ready(url, self.pairwise_judge.client.model, timeout_s=args.judge_ready_timeout_s)
        self._log_invalid_verdicts()
        self._all_invalid_streak = 0
        # TRL 1.16 seeds every rank identically (online_dpo_trainer.py L276); rollouts must differ per rank.
        set_seed(args.seed, device_specific=True)
        configure_chunks(args.logprob_token_chunk, args.logprob_vocab_chunk)
        if args.logprob_chunked:
            # Patched only now, after the parent deepcopied the reference (see ensure_fused_lm_head).
            ensure_fused_lm_head(self.model)
            if self.ref_model is not None:
                ensure_fused_lm_head(self.ref_model)
        self.num_generations = args.num_rollouts
        self._pool_kinds = (["pivot"] if args.include_pivot else []) + ["rollout"] * args.num_rollouts
        if args.rewrite_column:
            self._pool_kinds.append("rewrite")
        if len(self._pool_kinds) < 2:
            raise ValueError("the pool needs >= 2 candidates: raise num_rollouts or set include_pivot=True")
        self.judge_calls_per_prefix = (
            expected_num_calls(len(self._pool_kinds), args.judging_mode, args.judge_repeats)
            if self.pairwise_judge is not None
            else 0
        )
        self.stats = {key: [] for key in self._stat_keys()}
        self._micro_step, self._micro_step_of = 0, -1
        self._audit_path = (
            Path(args.output_dir) / f"pool_audit.rank{self.accelerator.process_index}.jsonl"
            if args.pool_audit
            else None
        )
        # Throughput/memory first: it annotates each log record before metrics.json copies it.
        self.add_callback(ThroughputMemoryCallback())
        self.metrics_callback: MetricsJsonCallback | None = None
        if args.metrics_json and self.accelerator.is_main_process:
            summary = phase3_summary_columns()
            extra = {
                "judge_calls_per_prefix": self.judge_calls_per_prefix,
                "pool_size": len(self._pool_kinds),
                "judging_mode": args.judging_mode,
                "judge_repeats": args.judge_repeats,
                "objective": args.objective,
                "rollouts_stop_at_eos": args.rollouts_stop_at_eos,
                "think_mode": args.think_mode,
                "stopped_reason": None,
            }
            self.metrics_callback = MetricsJsonCallback(args.output_dir, summary=summary, extra=extra)
            self.add_callback(self.metrics_callback)
        judges = judges_with_stats(self.reward_funcs)
        if judges and not any(isinstance(cb, JudgeStatsCallback) for cb in self.callback_handler.callbacks):
            self.add_callback(JudgeStatsCallback(judges))  # judge_stats.json, saved and restored
        # Last: skips the update and stops on a non-finite loss / grad norm / weight (wraps training_step).
        self.non_finite_guard = NonFiniteGuard.install(self, metrics_json=self.metrics_callback)

    # ------------------------------------------------------------------ construction helpers
    def _log_invalid_verdicts(self) -> None:
        """Every invalid verdict of a judge that keeps no log yet goes to
        ``<output_dir>/judge_invalid.rank<R>.jsonl`` (reason and raw reply), as in RLMT."""
        path = Path(self.args.output_dir) / f"judge_invalid.rank{self.accelerator.process_index}.jsonl"
        for judge in judges_with_stats(self.reward_funcs).values():
            if judge.stats.invalid_log_path is None:
                judge.stats.invalid_log_path = path

    @staticmethod
    def reference_from_checkpoint(model: Any, args: SelfImprovingOnlineDPOConfig) -> PreTrainedModel:
        """The frozen reference loaded from the policy's checkpoint (path or Hub id), in the policy's dtype.

        Used when the policy cannot be deep-copied (DeepSpeed ZeRO-3). A model built in memory has no
        checkpoint to load, so this says what to do instead of failing inside ``from_pretrained``.
        """
        model_id = model if isinstance(model, str) else get_config_model_id(model.config)
        if not model_id:
            raise ValueError(
                "DeepSpeed ZeRO-3 is on and no ref_model was passed, so the frozen reference is loaded from "
                "the policy's checkpoint, but this model was built in memory and has none "
                "(config._name_or_path is empty). Save it first (model.save_pretrained(path)) and pass the "
                "path as `model`, or pass `ref_model=`."
            )
        init = dict(args.model_init_kwargs or {})
        init["device_map"] = None  # distributed: each process holds (its shard of) the model
        init.setdefault("trust_remote_code", args.trust_remote_code)
        if not isinstance(model, str):
            init.setdefault("dtype", model.dtype)
            init.setdefault("attn_implementation", model.config._attn_implementation)
        return create_model_from_path(model_id, **init)

    @staticmethod
    def _judge_from_config(args: SelfImprovingOnlineDPOConfig, model: Any, tokenizer: Any) -> PairwiseJudge:
        if args.judge == "llm":
            if not args.judge_base_urls:
                raise ValueError("judge='llm' needs --judge_base_urls (or pass a judge as reward_funcs)")
            return LLMPairwiseJudge(
                base_url=args.judge_base_urls,
                prompt=args.judge_prompt,
                model=args.judge_model,
                temperature=args.judge_temperature,
                top_p=args.judge_top_p,
                max_tokens=args.judge_max_tokens,
                max_concurrency=args.judge_max_concurrency,
                timeout_s=args.judge_timeout_s,
                max_retries=args.judge_max_retries,
            )
        scorer = args.judge_scorer_model or (model if isinstance(model, str) else model.config._name_or_path)
        if not scorer:
            raise ValueError(
                "judge='likelihood' needs --judge_scorer_model (the model has no checkpoint path)"
            )
        with _whole_model_loading(args):
            return LikelihoodPairwiseJudge(scorer, tokenizer=tokenizer)

    def _stat_keys(self) -> list[str]:
        keys = [
            "dpo_kept_prefixes",
            "dpo_total_prefixes",
            "dpo_all_tie_prefixes",
            "pivot_pointwise_mean",
            "rollout_pointwise_mean",
            "rollout_minus_pivot_gap",
            "pool_top_score_mean",
            "pool_bottom_score_mean",
            "chosen_is_pivot_rate",
            "chosen_is_rollout_rate",
            "rejected_is_pivot_rate",
            "judge_calls",
            "judge_invalid_rate",
            "judge_latency_s_avg",
            "judge_wall_s",
            "gen_latency_s_avg",
            "rollout_len_mean",
            "rollout_eos_rate",
            "pivot_len_mean",
            "logps/chosen",
            "logps/rejected",
            "candidate_tokens",
        ]
        if self.args.objective == "dpo":
            keys += [
                "dpo_margin_avg",
                "dpo_chosen_beats_rejected_rate",
                "rewards/chosen",
                "rewards/rejected",
                "objective/kl",
                "beta",
            ]
        else:
            keys += ["rf_nll"]
        if self.args.rewrite_column:
            keys += ["rewrite_pointwise_mean", "chosen_is_rewrite_rate"]
        if self.args.think_mode:
            keys += ["autonomous_closed_think_rate", "avg_thought_tokens"]
        return keys

    # ------------------------------------------------------------------ data
    def _as_ids(self, value: Any, column: str) -> list[int]:
        """Token ids of a text (tokenized without special tokens) or of an id list."""
        if isinstance(value, str):
            return self._tokenizer(value, add_special_tokens=False)["input_ids"]
        if hasattr(value, "tolist"):  # numpy / torch formatted datasets
            value = value.tolist()
        if isinstance(value, (list, tuple)) and all(isinstance(t, numbers.Integral) for t in value):
            return [int(t) for t in value]
        raise ValueError(
            f"column '{column}': expected text, token ids or chat messages (a list of {{'role', 'content'}} "
            f"dicts), got {type(value).__name__}: {str(value)[:80]!r}"
        )

    def _prefix_ids(self, value: Any) -> list[int]:
        """A prefix as token ids; chat messages go through the chat template with the generation prompt
        (TRL's ``maybe_apply_chat_template``, as the stock ``OnlineDPOTrainer`` does)."""
        if is_conversational({"prompt": value}):
            value = apply_chat_template({"prompt": value}, self.processing_class)["prompt"]
        return self._as_ids(value, self.args.prefix_column)

    def _completion_ids(self, value: Any, prefix: Any, column: str) -> list[int]:
        """A pivot / rewrite as token ids; an assistant message list is rendered as TRL renders a
        prompt-completion pair (the completion is the template's text after the prompt)."""
        if is_conversational({"completion": value}):
            if not is_conversational({"prompt": prefix}):
                raise ValueError(
                    f"column '{column}' holds chat messages but the prefix is not conversational"
                )
            value = apply_chat_template({"prompt": prefix, "completion": value}, self.processing_class)
            value = value["completion"]
        return self._as_ids(value, column)

    def _prompt_ids(self, prefix_ids: list[int]) -> list[int]:
        if not self.args.think_mode:
            return prefix_ids
        return prefix_ids + self._tokenizer.encode(self.args.think_open_text, add_special_tokens=False)

    # ------------------------------------------------------------------ generation
    def _generate_rollouts(self, prompts: list[list[int]]) -> list[list[Candidate]]:
        """K rollouts per prompt from the current policy, in one batched ``generate`` (KV cache on)."""
        args, device = self.args, self.accelerator.device
        repeated = [p for p in prompts for _ in range(args.num_rollouts)]
        sampling = self.rollout_sampling_kwargs()
        with (
            unwrap_model_for_generation(
                self.model_wrapped, self.accelerator, gather_deepspeed3_params=args.ds3_gather_for_generation
            ) as unwrapped,
            torch.no_grad(),
        ):
            was_training = unwrapped.training
            unwrapped.eval()  # gradient checkpointing disables the KV cache in train mode
            try:
                if args.think_mode:
                    out = self._two_stage(unwrapped, repeated, sampling)
                else:
                    out = self._one_stage(unwrapped, repeated, sampling, device)
            finally:
                unwrapped.train(was_training)
        k = args.num_rollouts
        return [out[i * k : (i + 1) * k] for i in range(len(prompts))]

    def rollout_sampling_kwargs(self) -> dict[str, Any]:
        """Sampling settings of every rollout ``generate`` call, built like TRL's: the config's sampling
        fields (and ``cache_implementation``), then ``generation_kwargs`` on top (e.g.
        ``{"do_sample": False}``). Budgets and stop ids stay the trainer's (the config refuses them in
        ``generation_kwargs``)."""
        args = self.args
        sampling = {
            "do_sample": True,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "top_k": args.top_k,  # 0 disables top-k (HF's own default would be 50)
            "min_p": args.min_p,
            "repetition_penalty": args.repetition_penalty,
            "cache_implementation": args.cache_implementation,
        }
        sampling = {k: v for k, v in sampling.items() if v is not None}
        return sampling | dict(args.generation_kwargs or {})

    def _one_stage(self, model, prompts: list[list[int]], sampling: dict, device) -> list[Candidate]:
        args, tok = self.args, self._tokenizer
        ids, att = left_pad(prompts, tok.pad_token_id, device)
        config = GenerationConfig(
            **{
                "max_new_tokens": args.max_new_tokens,
                "min_new_tokens": None if args.rollouts_stop_at_eos else args.max_new_tokens,
                "eos_token_id": self.eos_token_ids,
                "pad_token_id": tok.pad_token_id,
                "use_cache": True,
                **sampling,
            }
        )
        generated = model.generate(input_ids=ids, attention_mask=att, generation_config=config)[
            :, ids.size(1) :
        ]
        eos = set(self.eos_token_ids)
        out = []
        for row in generated.tolist():
            seq = cut_at_stop(row, eos)[0] if args.rollouts_stop_at_eos else row  # EOS kept: it was sampled
            out.append(Candidate("rollout", seq, [1] * len(seq), seq))
        return out

    def _two_stage(self, model, prompts: list[list[int]], sampling: dict) -> list[Candidate]:
        from trl_ext.rollout import two_stage_generate

        rollouts = two_stage_generate(
            model,
            self._tokenizer,
            prompts,
            think_max_tokens=self.args.think_max_tokens,
            suffix_max_tokens=self.args.max_new_tokens,
            boundary_text=self.args.think_boundary_text,
            eos_token_ids=self.eos_token_ids,
            decode=False,
            **sampling,
        )
        return [
            Candidate(
                "rollout",
                list(r.completion_ids),
                list(r.loss_mask),
                list(r.suffix_ids),
                closed_by_model=r.closed_by_model,
                thought_len=len(r.thought_ids),
            )
            for r in rollouts
        ]

    def _static_candidate(self, kind: str, ids: list[int]) -> Candidate:
        """The pivot / rewrite: plain text after the prefix; in think mode preceded by an empty thought
        (just the inserted boundary, masked) so every candidate continues the same ``... <think>`` prompt."""
        if not self.args.think_mode:
            return Candidate(kind, ids, [1] * len(ids), ids)
        boundary = self._tokenizer.encode(self.args.think_boundary_text, add_special_tokens=False)
        return Candidate(kind, boundary + ids, [0] * len(boundary) + [1] * len(ids), ids)

    # ------------------------------------------------------------------ judging
    def _judge_text(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def _score_pools(
        self, inputs: dict[str, Any], prefix_texts: list[str], pools: list[list[Candidate]], keys: list[str]
    ) -> tuple[list[PoolScores], float, list[float]]:
        """Pointwise scores of every pool, the judge's wall time and its per-call latencies."""
        args, rank, step = self.args, self.accelerator.process_index, self.state.global_step
        texts = [[self._judge_text(c.judge_ids) for c in pool] for pool in pools]
        start = time.perf_counter()
        if self.pairwise_judge is None:  # pointwise reward funcs: a candidate's score is its reward
            values = self._pointwise_rewards(inputs, prefix_texts, pools, texts)
            wall, out, pos = time.perf_counter() - start, [], 0
            for pool in pools:
                n = len(pool)
                chunk = values[pos : pos + n]
                pos += n
                out.append(PoolScores(chunk, [0] * n, [0] * n, n, sum(math.isnan(v) for v in chunk)))
            return out, wall, []
        plans = [
            plan_comparisons(
                len(pool), pool_rng(args.seed, step, rank, key), args.judging_mode, 0, args.judge_repeats
            )
            for pool, key in zip(pools, keys)
        ]
        calls = [
            (p, ts[c.option_1], ts[c.option_2])
            for p, ts, plan in zip(prefix_texts, texts, plans)
            for c in plan
        ]
        verdicts: list[JudgeVerdict] = (
            self.pairwise_judge.judge_pairs(*map(list, zip(*calls))) if calls else []
        )
        if len(verdicts) != len(calls):
            raise RuntimeError(f"judge returned {len(verdicts)} verdicts for {len(calls)} calls")
        wall, out, pos = time.perf_counter() - start, [], 0
        for pool, plan in zip(pools, plans):
            out.append(score_pool(len(pool), plan, [winner_of(v) for v in verdicts[pos : pos + len(plan)]]))
            pos += len(plan)
        return out, wall, [v.latency_s for v in verdicts]

    def _ends_with_eos(self, cand: Candidate) -> bool:
        return bool(cand.judge_ids) and cand.judge_ids[-1] in self.eos_token_ids

    def _apply_missing_eos_penalty(self, pools: list[list[Candidate]], scores: list[PoolScores]) -> None:
        """TRL's ``missing_eos_penalty``: subtracted from the score of every rollout that did not end
        with EOS, before chosen/rejected are picked. Pivot and rewrite are document text, never penalised."""
        penalty = self.args.missing_eos_penalty
        if penalty is None:
            return
        for pool, pool_scores in zip(pools, scores):
            for k, cand in enumerate(pool):
                if cand.kind == "rollout" and not self._ends_with_eos(cand):
                    pool_scores.scores[k] -= penalty  # NaN (no valid vote) stays NaN

    def _pointwise_rewards(
        self,
        inputs: dict[str, Any],
        prefix_texts: list[str],
        pools: list[list[Candidate]],
        texts: list[list[str]],
    ) -> list[float]:
        """Weighted sum of the reward funcs over every candidate, called the way TRL calls them.

        Each func gets ``prompts`` (the row's prompt: chat messages as given, else the prefix text),
        ``completions`` (text, or ``[{"role": "assistant", ...}]`` for chat prompts), ``completion_ids``,
        ``reference`` (the original suffix's text) and every other dataset column, one entry per candidate.
        ``None`` keeps TRL's meaning, "does not apply here": the other funcs' rewards are summed, and a
        candidate is invalid (NaN, left out of chosen/rejected) only when every func returned ``None`` for it.
        Reward *models* never return None and go through TRL's ``_calculate_rewards_from_functions``.
        """
        args = self.args
        raw = inputs[args.prefix_column]
        chat = is_conversational({"prompt": raw[0]})
        repeat = lambda column: [v for v, pool in zip(column, pools) for _ in pool]  # noqa: E731
        prompts = repeat(raw if chat else prefix_texts)
        completions = [t for ts in texts for t in ts]
        if chat:
            completions = [[{"role": "assistant", "content": t}] for t in completions]
        extra = {key: repeat(values) for key, values in inputs.items() if key != args.prefix_column}
        if args.include_pivot or "reference" not in extra:
            extra["reference"] = repeat([ts[0] if args.include_pivot else "" for ts in texts])
        completion_ids = [c.judge_ids for pool in pools for c in pool]
        if any(isinstance(f, torch.nn.Module) for f in self.reward_funcs):
            return self._calculate_rewards_from_functions(
                prompts=prompts, completions=completions, completion_ids_list=completion_ids, **extra
            ).tolist()
        per_func = []
        for func in self.reward_funcs:
            scores = func(
                prompts=prompts,
                completions=completions,
                completion_ids=completion_ids,
                trainer_state=self.state,
                **extra,
            )
            per_func.append([math.nan if v is None else float(v) for v in scores])
        weights = self.reward_weights.tolist()
        total = []
        for values in zip(*per_func):
            valid = [(w, v) for w, v in zip(weights, values) if not math.isnan(v)]
            total.append(sum(w * v for w, v in valid) if valid else math.nan)
        return total

    # ------------------------------------------------------------------ log-probs and loss
    def _pack(self, prompts: list[list[int]], cands: list[Candidate]) -> tuple[torch.Tensor, ...]:
        """Right-padded ``prompt + candidate`` rows and the mask of scored tokens; prompt truncated on the
        left."""
        pad, device, limit = self._tokenizer.pad_token_id, self.accelerator.device, self.args.max_length
        rows, masks = [], []
        for prompt, cand in zip(prompts, cands):
            keep = max(limit - len(cand.ids), 1)
            p = prompt[-keep:]
            rows.append(p + cand.ids)
            masks.append([0] * len(p) + cand.score_mask)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
        att = torch.zeros_like(ids)
        score = torch.zeros_like(ids)
        for k, (r, m) in enumerate(zip(rows, masks)):
            ids[k, : len(r)] = torch.tensor(r, device=device)
            att[k, : len(r)] = 1
            score[k, : len(m)] = torch.tensor(m, device=device)
        return ids, att, score

    def _logps(self, model, ids, att, score) -> torch.Tensor:
        """Summed log-probs under the run's compute precision, the same for the policy and the reference.

        ``accelerate`` casts through a forward wrapper (autocast under ``--bf16``), but the fused chunked head
        calls the backbone directly, so the wrapper is bypassed on whichever model was patched after it was
        wrapped (the reference: TRL wraps it in ``__init__``; the policy only in ``train()``). Entering
        ``accelerator.autocast()`` here gives both models the same precision whatever the wrapping order;
        under DeepSpeed it is a no-op and both engines hold weights of the same dtype.
        """
        with self.accelerator.autocast():
            return sequence_logprobs(
                model,
                ids,
                att,
                score,
                chunked=self.args.logprob_chunked,
                micro_batch_size=self.args.logprob_micro_batch_size,
            )

    def _ref_logps(self, ids, att, score) -> torch.Tensor:
        with torch.no_grad():
            if self.ref_model is not None:
                return self._logps(self.ref_model, ids, att, score)
            with self.model.disable_adapter():  # PEFT: the reference is the base model without the adapter
                return self._logps(self.model, ids, att, score)

    # ------------------------------------------------------------------ the step
    def training_step(self, model, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        """Pools → judge → pairs → DPO / RF-NLL backward. Replaces TRL 1.16's 2-sample OnlineDPO step."""
        model.train()
        args = self.args
        if self._micro_step_of != self.state.global_step:
            self._micro_step_of, self._micro_step = self.state.global_step, 0
        self._micro_step += 1
        prefixes = self._prefixes(inputs)
        prompts = [self._prompt_ids(p) for p in prefixes]
        row_ids = inputs.get(args.id_column) or [f"row{k}" for k in range(len(prefixes))]
        keys = [f"{self._micro_step}:{r}" for r in row_ids]  # seeds this prefix's swaps and tie order

        start = time.perf_counter()
        pools = self._build_pools(inputs, prompts)
        gen_latency = time.perf_counter() - start
        prefix_texts = [self._judge_text(p) for p in prefixes]
        scores, judge_wall, latencies = self._score_pools(inputs, prefix_texts, pools, keys)
        self._apply_missing_eos_penalty(pools, scores)

        records, chosen, rejected, kept_prompts = [], [], [], []
        rank, step = self.accelerator.process_index, self.state.global_step
        for k, (pool, pool_scores) in enumerate(zip(pools, scores)):
            order = tie_order(args.seed, step, rank, keys[k], len(pool))
            choice = select_pair(pool_scores.scores, order)
            records.append(PoolRecord([c.kind for c in pool], pool_scores, choice))
            if choice is not None:
                chosen.append(pool[choice.chosen])
                rejected.append(pool[choice.rejected])
                kept_prompts.append(prompts[k])
        self._audit(row_ids, records, pools)
        # Kept for inspection (tests, debugging): the last micro-batch's pools and the pairs trained on.
        self.last_step = {"prompts": kept_prompts, "chosen": chosen, "rejected": rejected, "pools": pools,
                          "records": records, "prefix_texts": prefix_texts}  # fmt: skip

        metrics = summarize_pools(records) | self._candidate_metrics(pools)
        metrics["judge_wall_s"] = judge_wall
        metrics["judge_latency_s_avg"] = sum(latencies) / len(latencies) if latencies else judge_wall
        metrics["gen_latency_s_avg"] = gen_latency
        loss = self._loss(model, kept_prompts, chosen, rejected, prompts, pools, metrics)
        self._check_judge_health(self._record(metrics))
        # Average over gradient-accumulation micro-batches the way transformers' Trainer.training_step does
        # (TRL 1.16's OnlineDPOTrainer backprops the unscaled loss, so its gradients grow with the GA steps).
        loss = loss / getattr(self, "current_gradient_accumulation_steps", args.gradient_accumulation_steps)
        deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        self.accelerator.backward(loss, **({"scale_wrt_gas": False} if deepspeed else {}))
        return loss.detach()

    def _check_judge_health(self, metrics: dict[str, float]) -> None:
        """Warn on a high invalid rate; stop after ``judge_failure_patience`` all-invalid micro-batches.

        ``metrics`` are reduced over processes, so every rank takes the same branch (no rank is left
        waiting in a collective while another one raises)."""
        calls, invalid_rate = metrics["judge_calls"], metrics["judge_invalid_rate"]
        if calls and invalid_rate > 0.05:
            logger.warning("judge invalid rate %.2f this micro-batch (%d calls)", invalid_rate, calls)
        self._all_invalid_streak = self._all_invalid_streak + 1 if calls and invalid_rate == 1.0 else 0
        patience = self.args.judge_failure_patience
        if patience and self._all_invalid_streak >= patience:
            reasons = dict(getattr(getattr(self.pairwise_judge, "stats", None), "reasons", {}) or {})
            message = (
                f"every judge call was invalid in {self._all_invalid_streak} consecutive micro-batches "
                f"(reasons so far: {reasons or 'see the judge log'}); is the judge server up? Stopping at "
                f"step {self.state.global_step}; resume from the last checkpoint "
                "(--judge_failure_patience 0 disables this check)"
            )
            if self.metrics_callback is not None:
                self.metrics_callback.extra.update(stopped_reason="judge_failure", stopped_message=message)
                self.metrics_callback.write(self.state, finished=False)
            raise RuntimeError(message)

    def _prefixes(self, inputs: dict[str, Any]) -> list[list[int]]:
        args = self.args
        for column in (args.prefix_column,) + ((args.suffix_column,) if args.include_pivot else ()):
            if column not in inputs:
                flag = "--prefix_column" if column == args.prefix_column else "--suffix_column"
                hint = " (TRL prompt-only rows: --prefix_column prompt --include_pivot false)"
                raise KeyError(
                    f"training rows lack column '{column}' (columns: {sorted(inputs)}); set {flag}"
                    + (hint if "prompt" in inputs else "")
                )
        return [self._prefix_ids(p) for p in inputs[args.prefix_column]]

    def _build_pools(self, inputs: dict[str, Any], prompts: list[list[int]]) -> list[list[Candidate]]:
        """[pivot] + K rollouts + [rewrite] per prompt."""
        args = self.args
        pools = []
        for k, rolls in enumerate(self._generate_rollouts(prompts)):
            prefix, pool = inputs[args.prefix_column][k], []
            if args.include_pivot:
                ids = self._completion_ids(inputs[args.suffix_column][k], prefix, args.suffix_column)
                pool.append(self._static_candidate("pivot", ids))
            pool += rolls
            if args.rewrite_column:
                ids = self._completion_ids(inputs[args.rewrite_column][k], prefix, args.rewrite_column)
                pool.append(self._static_candidate("rewrite", ids))
            pools.append(pool)
        return pools

    def _candidate_metrics(self, pools: list[list[Candidate]]) -> dict[str, float]:
        """Lengths (the explicit EOS choice) and, in think mode, thought statistics."""
        rolls = [c for pool in pools for c in pool if c.kind == "rollout"]
        pivots = [c for pool in pools for c in pool if c.kind == "pivot"]
        out = {
            "rollout_len_mean": sum(len(c.judge_ids) for c in rolls) / len(rolls),
            "rollout_eos_rate": sum(self._ends_with_eos(c) for c in rolls) / len(rolls),
            "pivot_len_mean": sum(len(c.judge_ids) for c in pivots) / len(pivots) if pivots else math.nan,
        }
        if self.args.think_mode:
            out["autonomous_closed_think_rate"] = sum(bool(c.closed_by_model) for c in rolls) / len(rolls)
            out["avg_thought_tokens"] = sum(c.thought_len for c in rolls) / len(rolls)
        return out

    def _loss(self, model, prompts, chosen, rejected, all_prompts, pools, metrics) -> torch.Tensor:
        args = self.args
        n = len(chosen)
        if n == 0:
            # Nothing to learn from this micro-batch; still run the model so DDP/ZeRO ranks stay in lock-step.
            ids, att, score = self._pack(all_prompts[:1], pools[0][:1])
            metrics["candidate_tokens"] = 0.0
            for key in (
                "logps/chosen",
                "logps/rejected",
                "dpo_margin_avg",
                "dpo_chosen_beats_rejected_rate",
                "rewards/chosen",
                "rewards/rejected",
                "objective/kl",
                "rf_nll",
            ):
                metrics[key] = math.nan
            metrics["beta"] = self.beta
            return self._logps(model, ids, att, score).sum() * 0.0
        if args.objective == "rf_nll":
            ids, att, score = self._pack(prompts, chosen)
            logps = self._logps(model, ids, att, score)
            tokens = score.sum().clamp(min=1)
            loss = -logps.sum() / tokens
            metrics.update(
                {
                    "rf_nll": loss.item(),
                    "logps/chosen": logps.mean().item(),
                    "logps/rejected": math.nan,
                    "candidate_tokens": float(tokens),
                }
            )
            return loss
        ids, att, score = self._pack(prompts + prompts, chosen + rejected)
        logps = self._logps(model, ids, att, score)
        ref = self._ref_logps(ids, att, score)
        pc, pr, rc, rr = logps[:n], logps[n:], ref[:n], ref[n:]
        logits = (pc - pr) - (rc - rr)
        if args.loss_type == "sigmoid":
            losses = -F.logsigmoid(self.beta * logits)
        elif args.loss_type == "ipo":
            losses = (logits - 1 / (2 * self.beta)) ** 2
        else:
            raise NotImplementedError(f"loss_type {args.loss_type!r}")
        with torch.no_grad():
            metrics.update(
                {
                    "dpo_margin_avg": (self.beta * logits)
                    .mean()
                    .item(),  # includes beta, like TRL's rewards/margins
                    "dpo_chosen_beats_rejected_rate": (logits > 0).float().mean().item(),
                    "rewards/chosen": (self.beta * (pc - rc)).mean().item(),
                    "rewards/rejected": (self.beta * (pr - rr)).mean().item(),
                    "objective/kl": (logps - ref).mean().item(),
                    "logps/chosen": pc.mean().item(),
                    "logps/rejected": pr.mean().item(),
                    "candidate_tokens": float(score.sum()),
                    "beta": float(self.beta),
                }
            )
        return losses.mean()

    # ------------------------------------------------------------------ logging
    _SUMMED = {
        "dpo_kept_prefixes",
        "dpo_total_prefixes",
        "dpo_all_tie_prefixes",
        "judge_calls",
        "candidate_tokens",
    }

    def _record(self, metrics: dict[str, float]) -> dict[str, float]:
        """Reduce this micro-step's metrics over ranks (counts summed, rates nan-averaged) into
        ``self.stats``; returns the reduced values."""
        keys = list(self.stats)
        local = torch.tensor([float(metrics.get(k, math.nan)) for k in keys], device=self.accelerator.device)
        gathered = self.accelerator.gather(local.unsqueeze(0)).view(-1, len(keys)).cpu()
        reduced = {}
        for j, key in enumerate(keys):
            col = gathered[:, j]
            if key in self._SUMMED:
                value = float(torch.nansum(col))
            else:
                valid = col[~torch.isnan(col)]
                value = float(valid.mean()) if len(valid) else math.nan
            reduced[key] = value
            if not math.isnan(value):
                self.stats[key].append(value)
        if "candidate_tokens" in metrics:
            self.state.num_input_tokens_seen = getattr(self.state, "num_input_tokens_seen", 0) + int(
                float(torch.nansum(gathered[:, keys.index("candidate_tokens")]))
            )
        return reduced

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        # TRL 1.16 averages every self.stats list and divides by its length: a metric that was undefined for a
        # whole logging window (e.g. no prefix kept) must be left out rather than divided by zero.
        all_keys = list(self.stats)
        if self.control.should_log and self.state.global_step > self._globalstep_last_logged:
            # Counts are logged per optimizer step (summed over micro-batches and processes), not per
            # micro-batch.
            steps = self.state.global_step - self._globalstep_last_logged
            for key in self._SUMMED & self.stats.keys():
                if self.stats[key]:
                    self.stats[key] = [sum(self.stats[key]) / steps]
        self.stats = {k: v for k, v in self.stats.items() if v}
        try:
            return super()._maybe_log_save_evaluate(*args, **kwargs)
        finally:
            for key in all_keys:
                self.stats.setdefault(key, [])
            self.stats = {k: self.stats[k] for k in all_keys}

    def _audit(self, row_ids: list[Any], records: list[PoolRecord], pools: list[list[Candidate]]) -> None:
        """One JSONL row per pool; candidates as short hashes of their token ids (texts would be ~GBs)."""
        if self._audit_path is None:
            return
        self._audit_path.parent.mkdir(parents=True, exist_ok=True)
        with self._audit_path.open("a", encoding="utf-8") as fh:
            for row_id, r, pool in zip(row_ids, records, pools):
                row = {
                    "step": self.state.global_step,
                    "id": row_id,
                    "kinds": r.kinds,
                    "scores": [None if math.isnan(s) else s for s in r.scores.scores],
                    "chosen": None if r.choice is None else r.choice.chosen,
                    "rejected": None if r.choice is None else r.choice.rejected,
                    "judge_calls": r.scores.num_calls,
                    "judge_invalid": r.scores.num_invalid,
                    "candidate_sha1": [hashlib.sha1(str(c.ids).encode()).hexdigest()[:12] for c in pool],
                    "candidate_lengths": [len(c.judge_ids) for c in pool],
                }
                fh.write(json.dumps(row) + "\n")
