"""Validation metrics of the thinking SFT arms (docs/method.md §3), as a callback for any HF/TRL trainer.

Logged through the trainer's own ``log`` (so ``report_to`` backends and ``metrics.json`` get them):

* ``val_loss_selected`` — mean next-token CE over all target tokens of the held-out rows, on the
  arm's *own* training field (``interleaved_thinking_ids`` for think arms, ``raw_chunk_ids`` for
  ``raw_base``); ``val_loss`` is the seed table's primary metric and equals it by definition.
* ``val_loss_raw`` — the same on ``raw_chunk_ids`` (comparable across arms).
* ``thought_nll`` / ``text_nll`` / ``post_thought_16_nll`` — per row, mean CE over thought tokens
  (tags included), over raw-text tokens, and over the first 16 text tokens after each thought;
  then the mean over rows that have such tokens. Each row's augmented text is encoded segment by
  segment (text as is, thoughts with their tags) so that every token has exactly one kind.
* ``repetition_4gram_rate`` — over *sampled continuations* of held-out raw prefixes (not the
  data): Σ rows Σ 4-grams (count − 1) / Σ rows number of 4-grams. Also ``generation_think_rate``
  (share of continuations that open a thought) and ``generation_mean_tokens``.

Work is split across processes with ``accelerate`` and the per-row results gathered, so the
numbers do not depend on the number of processes.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from trl_ext.data.markup import parse_thinking


@dataclass(frozen=True)
class SFTMetricsConfig:
    """How much of the held-out set each evaluation uses, and how generations are sampled."""

    max_rows: int = 512
    batch_size: int = 2
    nll_max_tokens: int = 1024
    post_thought_window: int = 16
    generation_rows: int = 32
    generation_prompt_tokens: int = 128
    generation_max_new_tokens: int = 128
    temperature: float = 0.6
    top_p: float = 0.95
    seed: int = 1234
    eval_every_steps: int | None = None
    eval_on_start: bool = True


# --------------------------------------------------------------------------- pure pieces


def repetition_ngram_rate(sequences: Sequence[Sequence[int]], n: int = 4) -> float | None:
    """Σ rows Σ n-grams (count − 1) / Σ rows number of n-grams; None when no row has an n-gram."""
    repeats = total = 0
    for seq in sequences:
        grams = Counter(tuple(seq[i : i + n]) for i in range(len(seq) - n + 1))
        total += max(len(seq) - n + 1, 0)
        repeats += sum(c - 1 for c in grams.values())
    return repeats / total if total else None


def typed_token_ids(text: str, tokenizer, max_tokens: int = 1024, post_window: int = 16):
    """Encode thinking markup segment by segment → (ids, is_thought, is_post_thought) lists."""
    ids: list[int] = []
    thought: list[bool] = []
    post: list[bool] = []
    pending_post = 0
    for seg in parse_thinking(text):
        piece = tokenizer.encode(seg.markup, add_special_tokens=False)
        ids.extend(piece)
        if seg.kind == "thought":
            thought.extend([True] * len(piece))
            post.extend([False] * len(piece))
            pending_post = post_window
        else:
            thought.extend([False] * len(piece))
            take = min(pending_post, len(piece))
            post.extend([True] * take + [False] * (len(piece) - take))
            pending_post = 0  # the window never runs past the next thought
    return ids[:max_tokens], thought[:max_tokens], post[:max_tokens]


@torch.no_grad()
def per_token_nll(
    model, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int = 2
) -> list[torch.Tensor]:
    """CE of every token given its prefix; entry ``i`` has ``len(sequences[i]) - 1`` values (float32, CPU)."""
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    for start in range(0, len(sequences), batch_size):
        batch = [list(s) for s in sequences[start : start + batch_size]]
        width = max(len(s) for s in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(batch):
            ids[i, : len(s)] = torch.tensor(s, device=device)
            mask[i, : len(s)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        for i, s in enumerate(batch):
            out.append(nll[i, : max(len(s) - 1, 0)].cpu())
    return out


@torch.no_grad()
def sample_continuations(
    model,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    batch_size: int = 8,
    synced_gpus: bool = False,
    eos_token_ids: Sequence[int] | None = None,
) -> list[list[int]]:
    """Sampled continuations (prompt excluded, cut after the first EOS), left-padded batches."""
    device = next(model.parameters()).device
    eos_ids = (
        set(eos_token_ids) if eos_token_ids is not None else _eos_ids(model.generation_config.eos_token_id)
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    outputs: list[list[int]] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = [list(p) for p in prompts[start : start + batch_size]]
            width = max(len(p) for p in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long, device=device)
            mask = torch.zeros_like(ids)
            for i, p in enumerate(batch):
                ids[i, width - len(p) :] = torch.tensor(p, device=device)
                mask[i, width - len(p) :] = 1
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": None}
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=sorted(eos_ids) or None,
                use_cache=True,
                synced_gpus=synced_gpus,
                **(sampling if temperature > 0 else {"do_sample": False}),
            )
            for row in gen[:, width:].tolist():
                cut = next((i for i, t in enumerate(row) if t in eos_ids), None)
                outputs.append(row if cut is None else row[: cut + 1])
    finally:
        torch.random.set_rng_state(generator_state)
    return outputs


def _eos_ids(value) -> set[int]:
    return set(value if isinstance(value, list) else [value] if value is not None else [])


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _row_stats(
    own_nll: torch.Tensor,
    raw_nll: torch.Tensor,
    typed_nll: torch.Tensor,
    thought: list[bool],
    post: list[bool],
) -> dict:
    """Per-row sums/means; label ``t`` of the CE vector is token ``t + 1`` of the sequence."""
    th = torch.tensor(thought[1:], dtype=torch.bool)
    po = torch.tensor(post[1:], dtype=torch.bool)
    stats = {
        "own_sum": float(own_nll.sum()), "own_n": own_nll.numel(),
        "raw_sum": float(raw_nll.sum()), "raw_n": raw_nll.numel(),
    }  # fmt: skip
    for name, mask in (("thought", th), ("text", ~th), ("post", po & ~th)):
        stats[name] = float(typed_nll[mask].mean()) if mask.any() else None
    return stats


def aggregate(
    rows: Sequence[Mapping], generations: Sequence[Sequence[int]], think_open_id: int | None
) -> dict:
    """Combine per-row stats into the logged metrics (token-weighted losses, row-mean typed NLL)."""
    own_n = sum(r["own_n"] for r in rows)
    raw_n = sum(r["raw_n"] for r in rows)
    val_loss = sum(r["own_sum"] for r in rows) / own_n if own_n else math.nan
    metrics = {
        "val_loss": val_loss,
        "val_loss_selected": val_loss,
        "val_loss_raw": sum(r["raw_sum"] for r in rows) / raw_n if raw_n else math.nan,
        "thought_nll": _mean([r["thought"] for r in rows if r["thought"] is not None]),
        "text_nll": _mean([r["text"] for r in rows if r["text"] is not None]),
        "post_thought_16_nll": _mean([r["post"] for r in rows if r["post"] is not None]),
        "val_rows": len(rows),
    }
    if generations:
        metrics["repetition_4gram_rate"] = repetition_ngram_rate(generations, 4)
        metrics["generation_mean_tokens"] = sum(map(len, generations)) / len(generations)
        if think_open_id is not None:
            metrics["generation_think_rate"] = sum(think_open_id in g for g in generations) / len(generations)
    return {k: (math.nan if v is None else v) for k, v in metrics.items()}


# --------------------------------------------------------------------------- the callback


class ThinkingSFTMetricsCallback(TrainerCallback):
    """Evaluates held-out augmented rows at the start, every ``eval_every_steps`` (default: the
    trainer's ``eval_steps`` when ``eval_strategy="steps"``) and at the last step.

    Example::

        trainer = SFTTrainer(model=..., args=SFTConfig(...), train_dataset=rows)
        trainer.add_callback(ThinkingSFTMetricsCallback(trainer, heldout_rows, "interleaved_thinking_ids"))

    ``val_rows`` are augmented rows (``trl_ext.data.augment.AUGMENTED_SCHEMA``). The final results
    are logged before ``on_train_end``, so a ``metrics.json`` writer there sees them; they are also
    kept in :attr:`last_metrics`.
    """

    def __init__(
        self,
        trainer,
        val_rows: Sequence[Mapping],
        target_field: str = "interleaved_thinking_ids",
        config: SFTMetricsConfig = SFTMetricsConfig(),
        tokenizer=None,
    ):
        if target_field not in ("interleaved_thinking_ids", "raw_chunk_ids"):
            raise ValueError(
                f"target_field must be interleaved_thinking_ids or raw_chunk_ids, got {target_field!r}"
            )
        if not val_rows:
            raise ValueError("ThinkingSFTMetricsCallback needs at least one held-out row")
        self.trainer = trainer
        self.rows = list(val_rows)[: config.max_rows]
        self.target_field = target_field
        self.config = config
        self.tokenizer = tokenizer or trainer.processing_class
        self.last_metrics: dict | None = None
        self._evaluated_steps: set[int] = set()

    def _every(self, args) -> int | None:
        if self.config.eval_every_steps:
            return self.config.eval_every_steps
        if str(getattr(args, "eval_strategy", "no")).endswith("steps") and args.eval_steps:
            return int(args.eval_steps) if args.eval_steps >= 1 else None
        return None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.config.eval_on_start:
            self._evaluate_and_log(state, control)

    def on_step_end(self, args, state, control, **kwargs):
        every = self._every(args)
        if state.global_step >= state.max_steps or (every and state.global_step % every == 0):
            self._evaluate_and_log(state, control)

    def on_train_end(self, args, state, control, **kwargs):
        # Training stopped early (a stop callback, an interrupt): still record final numbers.
        self._evaluate_and_log(state, control)

    def _evaluate_and_log(self, state, control) -> None:
        if state.global_step in self._evaluated_steps:
            return
        self._evaluated_steps.add(state.global_step)
        start = time.perf_counter()
        wrapped = self.trainer.model
        was_training = wrapped.training
        # Logging from on_step_end must not swallow the step's own train log: the callback handler
        # clears ``should_log`` in on_log, and TRL trainers attach their buffered *train* metrics to
        # whatever is logged while the model is in train mode (trl 1.16 SFTTrainer.log).
        pending_train_log = control.should_log
        wrapped.eval()
        try:
            self.last_metrics = self.evaluate(self.trainer.accelerator.unwrap_model(wrapped))
            # sft_eval_seconds lets throughput be computed over training time only.
            self.trainer.log({**self.last_metrics, "sft_eval_seconds": time.perf_counter() - start})
        finally:
            wrapped.train(was_training)
            control.should_log = pending_train_log

    def evaluate(self, model) -> dict:
        """Compute all metrics on ``model`` (any causal LM); restores its train/eval mode."""
        accelerator = self.trainer.accelerator
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        was_training = model.training
        model.eval()
        try:
            indices = list(range(len(self.rows)))
            with accelerator.split_between_processes(indices, apply_padding=True) as mine:
                stats = self._row_stats(model, [self.rows[i] for i in mine], pad_id)
                mine_stats = list(zip(mine, stats))
            gen_idx = list(range(min(self.config.generation_rows, len(self.rows))))
            generations: list[tuple[int, list[int]]] = []
            if gen_idx:
                with accelerator.split_between_processes(gen_idx, apply_padding=True) as mine_gen:
                    prompts = [
                        self.rows[i]["raw_chunk_ids"][: self.config.generation_prompt_tokens]
                        for i in mine_gen
                    ]
                    outs = sample_continuations(
                        model,
                        prompts,
                        pad_id,
                        self.config.generation_max_new_tokens,
                        self.config.temperature,
                        self.config.top_p,
                        self.config.seed + accelerator.process_index,
                        batch_size=max(self.config.batch_size, 8),
                        synced_gpus=_zero3(accelerator),
                        eos_token_ids=self._stop_ids(model),
                    )
                    generations = list(zip(mine_gen, outs))
        finally:
            model.train(was_training)
        if accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            mine_stats, generations = gather_object(mine_stats), gather_object(generations)
        rows = list(dict(mine_stats).values())  # padding duplicates collapse onto their index
        gens = list(dict(generations).values())
        think_open = tok.convert_tokens_to_ids("<think>")
        return aggregate(rows, gens, think_open if think_open != tok.unk_token_id else None)

    def _stop_ids(self, model) -> list[int]:
        # Trainers align the model's EOS with the tokenizer's (Qwen3: <|im_end|>) while a base model
        # ends documents with <|endoftext|>: stop at either.
        ids = _eos_ids(model.generation_config.eos_token_id) | _eos_ids(self.tokenizer.eos_token_id)
        return sorted(ids)

    def _row_stats(self, model, rows: Sequence[Mapping], pad_id: int) -> list[dict]:
        cfg = self.config
        typed = [
            typed_token_ids(r["augmented_text"], self.tokenizer, cfg.nll_max_tokens, cfg.post_thought_window)
            for r in rows
        ]
        own = [list(r[self.target_field])[: cfg.nll_max_tokens] for r in rows]
        raw = [list(r["raw_chunk_ids"])[: cfg.nll_max_tokens] for r in rows]
        # Several of the three sequences per row are usually identical (own == typed for think arms,
        # own == raw for raw_base): score each distinct sequence once.
        distinct = list(dict.fromkeys(tuple(s) for s in own + raw + [t[0] for t in typed]))
        scores = dict(zip(distinct, per_token_nll(model, distinct, pad_id, cfg.batch_size)))
        return [
            _row_stats(scores[tuple(o)], scores[tuple(r)], scores[tuple(t[0])], t[1], t[2])
            for o, r, t in zip(own, raw, typed)
        ]


def _zero3(accelerator) -> bool:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return bool(plugin is not None and plugin.zero_stage == 3)
