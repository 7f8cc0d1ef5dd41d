"""Exact top-p (nucleus) sampling in O(vocabulary) per sequence, without sorting the vocabulary.

Why: on a CPU, ``transformers``' nucleus sampling sorts the whole vocabulary of every sequence at
every decode step, then samples with ``torch.multinomial``. With Qwen3's 151,936-token
vocabulary that costs ~11 ms per sequence per token on 2 cores, more than the forward pass of a
small model, and it grows linearly with the batch, so a continuous-batching server gains little
from serving 32 requests at once (``bench/bench_sampler.py`` measures both).

How: draw a token from the full (temperature-scaled) distribution by inverse CDF, then accept it
if it lies in the nucleus, else draw again. A token lies in the nucleus exactly when the
probability mass of the tokens ranked at or below it is greater than ``1 - top_p`` (that is the
rule ``transformers``' ``TopPLogitsWarper`` applies after sorting), and the most likely token always
does. Conditioned on acceptance the draw follows the renormalised nucleus distribution, i.e. the
same distribution as sort-then-sample. The nucleus holds at least ``top_p`` of the mass, so a
draw is accepted with probability >= top_p; rows still rejected after a few rounds (tiny
``top_p``) take the sort-based path. Tokens with probability 0 (masked to -inf) are never drawn.

Ties: tokens with exactly equal probability at the nucleus boundary are all kept here; the
sort-based rule keeps an arbitrary subset of them (``torch.sort`` is not stable).
"""

from __future__ import annotations

import functools
import math

import torch

# Inverse-CDF sampling works on blocks of the vocabulary: a float32 sum per block (cheap), then a
# float64 cumulative sum over the blocks and over the one chosen block, so a 152k-token CDF never
# accumulates float32 rounding. Blocks of 256-4096 tokens that divide the vocabulary avoid a padded
# copy (Qwen3: 128 blocks of 1187); otherwise 1024 with padding.
MIN_BLOCK, MAX_BLOCK, FALLBACK_BLOCK = 256, 4096, 1024
MAX_DRAWS = 4


@functools.cache
def block_size(vocab: int) -> int:
    divisors = [d for d in range(MIN_BLOCK, MAX_BLOCK + 1) if vocab % d == 0]
    return min(divisors, key=lambda d: abs(d - math.isqrt(vocab))) if divisors else FALLBACK_BLOCK


def unnormalised_probs(scores: torch.Tensor, temperature: float = 1.0, inplace: bool = False) -> torch.Tensor:
    """``exp((scores - max) / temperature)`` per row: proportional to ``softmax(scores / temperature)``
    (the top token weighs 1). Skipping the normalisation and working in place saves passes over a
    [batch, vocabulary] tensor, which is what sampling costs on a CPU."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to sample, got {temperature}")
    weights = scores.to(torch.float32, copy=not inplace)
    row_max = weights.amax(-1, keepdim=True)
    if not bool(torch.isfinite(row_max).all()):
        raise ValueError("cannot sample: a row of scores has no finite value")
    weights.sub_(row_max)
    if temperature != 1.0:
        weights.div_(temperature)
    return weights.exp_()


def _draw(weights: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-CDF draw of one token per row of ``weights`` ([N, V], >= 0, any scale); also the row
    totals (float64)."""
    n, vocab = weights.shape
    size = block_size(vocab)
    nblocks = math.ceil(vocab / size)
    if nblocks * size != vocab:
        weights = torch.nn.functional.pad(weights, (0, nblocks * size - vocab))
    blocks = weights.view(n, nblocks, size)
    block_mass = blocks.sum(-1).double()  # [N, nblocks]
    block_cdf = block_mass.cumsum(-1)
    # u in (0, total]: the first block whose CDF reaches u has non-zero mass.
    u = (1.0 - torch.rand(n, 1, dtype=torch.float64, generator=generator)) * block_cdf[:, -1:]
    block = torch.searchsorted(block_cdf, u).clamp_(max=nblocks - 1)  # [N, 1]
    inner = blocks.gather(1, block.unsqueeze(-1).expand(n, 1, size)).squeeze(1).double().cumsum(-1)
    remaining = u - (block_cdf.gather(1, block) - block_mass.gather(1, block))
    # Rounding can put `remaining` a hair outside (0, block mass]; clamping keeps the draw on a
    # token with non-zero weight (the first / last such token of the block).
    remaining = torch.minimum(remaining.clamp_(min=torch.finfo(torch.float64).tiny), inner[:, -1:])
    within = torch.searchsorted(inner, remaining)
    return (block * size + within).squeeze(1), block_cdf[:, -1]


def sample_categorical(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``weights`` ([N, V], non-negative, rows need not sum to 1), drawn with
    probability proportional to its weight; zero-weight tokens are never drawn."""
    return _draw(weights, generator)[0]


def in_nucleus(
    weights: torch.Tensor, tokens: torch.Tensor, top_p: float, totals: torch.Tensor | None = None
) -> torch.Tensor:
    """Whether each row's token is kept by top-p: the mass of tokens ranked at or below it exceeds
    ``1 - top_p`` of the row's mass; a token with nothing more likely than it is always kept."""
    totals = weights.sum(-1, dtype=torch.float64) if totals is None else totals
    w_token = weights.gather(1, tokens.unsqueeze(1)).squeeze(1).tolist()
    # One fused pass per row (F.threshold keeps values > w_token) is ~4x faster than a batched
    # compare-and-mask, which materialises two [N, V] temporaries.
    mass_above = torch.stack(
        [torch.nn.functional.threshold(row, w, 0.0).sum() for row, w in zip(weights, w_token, strict=True)]
    ).double()
    return (totals - mass_above > (1.0 - top_p) * totals) | (mass_above == 0)


def sort_based_top_p_mask(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """The reference rule (``transformers``' ``TopPLogitsWarper``): True where a token is removed."""
    sorted_scores, sorted_indices = torch.sort(scores, descending=False, dim=-1)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -1:] = False
    return remove_sorted.scatter(-1, sorted_indices, remove_sorted)


def nucleus_sample(
    scores: torch.Tensor,
    top_p: float = 1.0,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Sample one token per row of ``scores`` ([N, V] logits) from the top-p nucleus of
    ``softmax(scores / temperature)``: the distribution of transformers' temperature and top-p
    warpers followed by ``torch.multinomial``. ``inplace`` lets it overwrite ``scores``."""
    weights = unnormalised_probs(scores, temperature, inplace)
    tokens, totals = _draw(weights, generator)
    if top_p >= 1.0:
        return tokens
    pending = ~in_nucleus(weights, tokens, top_p, totals)
    for _ in range(MAX_DRAWS - 1):
        if not bool(pending.any()):
            return tokens
        rows = pending.nonzero().squeeze(1)
        redrawn, row_totals = _draw(weights[rows], generator)
        tokens[rows] = redrawn
        pending[rows] = ~in_nucleus(weights[rows], redrawn, top_p, row_totals)
    if bool(pending.any()):  # a tiny top_p: sort these rows (log of the weights = shifted scores)
        rows = pending.nonzero().squeeze(1)
        row_weights = weights[rows]
        removed = sort_based_top_p_mask(row_weights.log(), top_p)
        tokens[rows] = sample_categorical(row_weights.masked_fill(removed, 0.0), generator)
    return tokens
