"""Token-budget matching between SFT arms (docs/method.md §3).

The ``raw_base`` control trains on the same rows as the thinking arms but without thoughts, so
each of its sequences is shorter. Giving it the same number of optimizer steps would give it
fewer tokens and confound "thoughts help" with "more tokens help"; instead its step count is
derived so the expected number of trained tokens matches (reference run: 512 think steps →
657 raw steps, ~4.04M tokens each). The numbers come from the actual rows, never a constant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TokenBudget:
    """How the matched arm's step count was derived (logged and written to metrics.json)."""

    reference_field: str
    matched_field: str
    rows: int
    sequences_per_step: int
    steps_per_epoch: int
    reference_steps: int
    reference_mean_tokens: float
    matched_mean_tokens: float
    reference_sequences: int
    reference_tokens: int
    matched_steps: int
    matched_sequences: int
    matched_tokens: int

    @property
    def relative_gap(self) -> float:
        """(matched − reference) / reference; at most one step's worth of tokens."""
        return (self.matched_tokens - self.reference_tokens) / self.reference_tokens

    def as_dict(self) -> dict:
        return {**asdict(self), "relative_gap": self.relative_gap}


def epoch_schedule(n_rows: int, per_device_batch: int, grad_accum: int, world_size: int = 1) -> list[int]:
    """Sequences trained in each optimizer step of one epoch, as the HF Trainer batches them.

    Micro-batches of ``per_device_batch × world_size`` sequences (the last one partial) are grouped
    ``grad_accum`` at a time; the epoch's last step takes what is left. Exact for one process;
    with several, accelerate's even batching may repeat a few rows at the epoch end.
    """
    if min(n_rows, per_device_batch, grad_accum, world_size) <= 0:
        raise ValueError(
            f"need positive n_rows, per_device_batch, grad_accum, world_size; got "
            f"{n_rows}, {per_device_batch}, {grad_accum}, {world_size}"
        )
    micro = per_device_batch * world_size
    sizes = [micro] * (n_rows // micro) + ([n_rows % micro] if n_rows % micro else [])
    return [sum(sizes[i : i + grad_accum]) for i in range(0, len(sizes), grad_accum)]


def sequences_after(steps: int, schedule: Sequence[int]) -> int:
    """Sequences trained after ``steps`` optimizer steps, cycling epochs of ``schedule``."""
    full, rest = divmod(steps, len(schedule))
    return full * sum(schedule) + sum(schedule[:rest])


def match_token_budget(
    reference_lengths: Sequence[int],
    matched_lengths: Sequence[int],
    reference_steps: int,
    per_device_batch: int,
    grad_accum: int,
    world_size: int = 1,
    reference_field: str = "interleaved_thinking_ids",
    matched_field: str = "raw_chunk_ids",
) -> TokenBudget:
    """Fewest steps for the matched arm whose expected tokens reach the reference arm's.

    ``reference_lengths`` / ``matched_lengths``: per-row token counts of each arm's training target
    on the same rows (after any truncation the trainer applies). Expected tokens = sequences
    trained (from :func:`epoch_schedule`) × the arm's mean length. ``reference_steps`` ≤ 0 means one
    epoch.
    """
    if not reference_lengths or not matched_lengths:
        raise ValueError("token budget matching needs non-empty length lists for both arms")
    if len(reference_lengths) != len(matched_lengths):
        raise ValueError("both arms must train on the same rows (length lists differ in size)")
    if min(matched_lengths) <= 0:
        raise ValueError("matched arm has an empty training sequence")
    schedule = epoch_schedule(len(reference_lengths), per_device_batch, grad_accum, world_size)
    if reference_steps <= 0:
        reference_steps = len(schedule)
    ref_mean = sum(reference_lengths) / len(reference_lengths)
    matched_mean = sum(matched_lengths) / len(matched_lengths)
    reference_sequences = sequences_after(reference_steps, schedule)
    reference_tokens = round(reference_sequences * ref_mean)
    needed = math.ceil(reference_tokens / matched_mean - 1e-9)  # sequences the matched arm must see
    full_epochs, rest = divmod(needed, sum(schedule))
    steps_in_last = next(i for i in range(len(schedule) + 1) if sum(schedule[:i]) >= rest)
    matched_steps = full_epochs * len(schedule) + steps_in_last
    matched_sequences = sequences_after(matched_steps, schedule)
    return TokenBudget(
        reference_field=reference_field,
        matched_field=matched_field,
        rows=len(reference_lengths),
        sequences_per_step=per_device_batch * grad_accum * world_size,
        steps_per_epoch=len(schedule),
        reference_steps=reference_steps,
        reference_mean_tokens=round(ref_mean, 4),
        matched_mean_tokens=round(matched_mean, 4),
        reference_sequences=reference_sequences,
        reference_tokens=reference_tokens,
        matched_steps=matched_steps,
        matched_sequences=matched_sequences,
        matched_tokens=round(matched_sequences * matched_mean),
    )
