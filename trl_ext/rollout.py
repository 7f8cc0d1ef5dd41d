"""Two-stage external-boundary rollout (docs/method.md §4): prompt | thought | inserted boundary | suffix.

Stage 1 samples a thought of at most ``think_max_tokens`` from a prompt that ends inside an open
``<think>``. Each row ends in one of three ways, all handled here and recorded on the rollout:

* ``"closed"`` — the policy sampled ``</think>`` itself (``closed_by_model=True``). The token stays in
  ``thought_ids`` (the ids are exactly what was sampled) but gets loss weight 0 by default, as the
  boundary would (docs/method.md §4: the boundary is never trained); ``train_on_autonomous_close=True``
  gives it weight 1 so that closing the thought becomes a learnable action. Only the rest of the
  boundary text (nothing, for the default boundary ``"</think>"``) is inserted.
* ``"eos"`` — the policy sampled an end-of-sequence token inside the thought. The EOS is dropped
  (continuing after it would condition the suffix on a token that means "stop"), and the whole
  boundary is inserted.
* ``"budget"`` — ``think_max_tokens`` was reached; the whole boundary is inserted.

Stage 2 samples at most ``suffix_max_tokens`` conditioned on ``prompt + thought + boundary``, passed
as token ids: nothing is decoded and re-encoded between the stages, so the ids the loss sees are
exactly the ids that were sampled. Inserted boundary tokens get loss weight 0 (``loss_mask``) —
the policy never chose them, so they must not receive gradient.

Generation settings (sampling, ``cache_implementation``, penalties, ``generation_kwargs``) are passed to
both ``generate`` calls unchanged; only ``max_new_tokens`` and ``eos_token_id`` differ per stage.

Both stages are one batched ``generate`` call over every prompt (all K samples of all prefixes),
left-padded, with the KV cache on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

StopReason = Literal["closed", "eos", "budget"]

THINK_CLOSE = "</think>"
DEFAULT_GENERATION_KWARGS: dict[str, Any] = {"do_sample": True, "temperature": 1.0, "top_p": 0.95, "top_k": 0}


@dataclass
class Rollout:
    """One two-stage sample. ``completion_ids`` is what the trainer scores; ``loss_mask`` says which
    of its tokens the policy sampled (1) and which were inserted (0)."""

    prompt_ids: list[int]
    thought_ids: list[int]  # sampled; ends with the policy's own </think> when closed_by_model
    boundary_ids: list[int]  # inserted, never sampled
    suffix_ids: list[int]  # sampled; ends with EOS unless the suffix budget was reached
    closed_by_model: bool
    stop_reason: StopReason = "budget"
    thought_text: str = ""  # thought content (without tags), decoded for logging and probes
    suffix_text: str = ""  # decoded suffix, special tokens removed: what judges see
    close_trainable: bool = False  # loss weight of the policy's own </think> (when closed_by_model)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def completion_ids(self) -> list[int]:
        return [*self.thought_ids, *self.boundary_ids, *self.suffix_ids]

    @property
    def loss_mask(self) -> list[int]:
        thought = [1] * len(self.thought_ids)
        if self.closed_by_model and thought:
            thought[-1] = int(self.close_trainable)
        return thought + [0] * len(self.boundary_ids) + [1] * len(self.suffix_ids)

    @property
    def thought_content_ids(self) -> list[int]:
        """The thought without the policy's closing tag (what the thought *says*)."""
        return self.thought_ids[:-1] if self.closed_by_model else list(self.thought_ids)

    @property
    def num_new_tokens(self) -> int:
        """Sampled tokens (thought + suffix); inserted tokens are not counted."""
        return len(self.thought_ids) + len(self.suffix_ids)


def resolve_eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids the way TRL's GRPOTrainer resolves them: the model's generation EOS plus the
    tokenizer's (Qwen3 base: ``<|endoftext|>``; chat checkpoints add ``<|im_end|>``)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids = [tokenizer.eos_token_id, *ids]
    return ids


def single_token_id(tokenizer: Any, text: str) -> int:
    """Id of a tag that must be one token (``</think>`` is 151668 in Qwen3); a tokenizer that
    splits it cannot stop generation on it, so that is an error rather than a silent fallback."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(
            f"{text!r} must be a single token for the two-stage rollout, but the tokenizer "
            f"({getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)}) splits it into {ids}; "
            f"add it with tokenizer.add_tokens([{text!r}]) and resize the model embeddings"
        )
    return ids[0]


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | str
) -> tuple[torch.Tensor, ...]:
    """Left-padded ids and attention mask, so every row's next token is at the same position."""
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(seqs), width), dtype=torch.long, device=device)
    for row, seq in enumerate(seqs):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long, device=device)
            mask[row, width - len(seq) :] = 1
    return ids, mask


def cut_at_stop(tokens: Iterable[int], stop_ids: set[int]) -> tuple[list[int], int | None]:
    """Tokens up to and including the first stop id, and that id (None when none occurred:
    the budget was reached). Everything after it is generate's padding."""
    out: list[int] = []
    for token in tokens:
        out.append(token)
        if token in stop_ids:
            return out, token
    return out, None


def _generate(model: Any, contexts: list[list[int]], pad_id: int, **kwargs: Any) -> list[list[int]]:
    device = next(model.parameters()).device
    ids, mask = left_pad(contexts, pad_id, device)
    kwargs = {"use_cache": True, "pad_token_id": pad_id, **kwargs}  # KV cache on unless asked otherwise
    out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    return out[:, ids.size(1) :].tolist()


@torch.no_grad()
def two_stage_generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    think_max_tokens: int = 48,
    suffix_max_tokens: int = 128,
    *,
    boundary_text: str = THINK_CLOSE,
    eos_token_ids: Sequence[int] | None = None,
    decode: bool = True,
    train_on_autonomous_close: bool = False,
    **generation_kwargs: Any,
) -> list[Rollout]:
    """Sample one thought and one suffix per prompt (repeat a prompt K times for K samples).

    Args:
        model: a causal LM with ``generate`` (an unwrapped training model is fine).
        tokenizer: its tokenizer; ``</think>`` must be a single token.
        prompt_ids: token ids of each prompt, already ending inside an open ``<think>``.
        think_max_tokens: stage-1 budget (docs/method.md: 48).
        suffix_max_tokens: stage-2 budget (docs/method.md: 128).
        boundary_text: text inserted between thought and suffix; it must start with ``</think>``
            (e.g. ``"</think>\\n\\n"`` for a chat format). Its token ids are inserted, not sampled.
        eos_token_ids: ids that end a sample; default: model generation EOS + tokenizer EOS.
        decode: fill ``thought_text`` / ``suffix_text`` (skip for pure-throughput use).
        train_on_autonomous_close: loss weight 1 (instead of 0) for a ``</think>`` the policy sampled.
        **generation_kwargs: passed to both ``generate`` calls (default: sampling at T=1.0,
            top_p=0.95, top_k off). ``max_new_tokens``/``eos_token_id`` are set per stage.
    """
    if not prompt_ids:
        return []
    if think_max_tokens < 1 or suffix_max_tokens < 1:
        raise ValueError(
            f"think_max_tokens ({think_max_tokens}) and suffix_max_tokens ({suffix_max_tokens}) must be ≥1"
        )
    if not boundary_text.startswith(THINK_CLOSE):
        raise ValueError(f"boundary_text must start with {THINK_CLOSE!r}, got {boundary_text!r}")
    for banned in ("max_new_tokens", "max_length", "eos_token_id", "input_ids", "attention_mask"):
        if banned in generation_kwargs:
            raise ValueError(
                f"two_stage_generate sets {banned!r} itself (use think_max_tokens/suffix_max_tokens)"
            )
    close_id = single_token_id(tokenizer, THINK_CLOSE)
    boundary_ids = tokenizer.encode(boundary_text, add_special_tokens=False)
    boundary_tail = boundary_ids[1:]  # what is still inserted when the policy closed the thought itself
    eos = list(eos_token_ids) if eos_token_ids is not None else resolve_eos_token_ids(model, tokenizer)
    if not eos:
        raise ValueError("no EOS token id: pass eos_token_ids or set model.generation_config.eos_token_id")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    kwargs = {**DEFAULT_GENERATION_KWARGS, **generation_kwargs}
    prompts = [list(p) for p in prompt_ids]

    # Stage 1: the thought; stops on </think> or EOS.
    stage1 = _generate(
        model, prompts, pad_id, max_new_tokens=think_max_tokens, eos_token_id=[close_id, *eos], **kwargs
    )
    thoughts, boundaries, reasons = [], [], []
    for row in stage1:
        tokens, stop = cut_at_stop(row[:think_max_tokens], {close_id, *eos})
        if stop == close_id:
            thoughts.append(tokens)
            boundaries.append(list(boundary_tail))
            reasons.append("closed")
        else:
            thoughts.append(tokens[:-1] if stop is not None else tokens)
            boundaries.append(list(boundary_ids))
            reasons.append("eos" if stop is not None else "budget")

    # Stage 2: the suffix, conditioned on the ids exactly as sampled plus the inserted boundary.
    contexts = [p + t + b for p, t, b in zip(prompts, thoughts, boundaries)]
    stage2 = _generate(model, contexts, pad_id, max_new_tokens=suffix_max_tokens, eos_token_id=eos, **kwargs)
    suffixes = [cut_at_stop(row[:suffix_max_tokens], set(eos))[0] for row in stage2]

    trainable = train_on_autonomous_close
    rollouts = [
        Rollout(p, t, b, s, closed_by_model=r == "closed", stop_reason=r, close_trainable=trainable)
        for p, t, b, s, r in zip(prompts, thoughts, boundaries, suffixes, reasons)
    ]
    if decode:
        thought_texts = tokenizer.batch_decode(
            [r.thought_content_ids for r in rollouts], skip_special_tokens=True
        )
        suffix_texts = tokenizer.batch_decode(suffixes, skip_special_tokens=True)
        for rollout, thought, suffix in zip(rollouts, thought_texts, suffix_texts):
            rollout.thought_text, rollout.suffix_text = thought.strip(), suffix
    return rollouts


def single_stage_generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    **generation_kwargs: Any,
) -> list[list[int]]:
    """One ``generate`` of ``max_new_tokens`` with the same batching (the benchmark's baseline)."""
    eos = resolve_eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    kwargs = {**DEFAULT_GENERATION_KWARGS, **generation_kwargs}
    with torch.no_grad():
        rows = _generate(
            model,
            [list(p) for p in prompt_ids],
            pad_id,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            **kwargs,
        )
    return [cut_at_stop(row[:max_new_tokens], set(eos))[0] for row in rows]
