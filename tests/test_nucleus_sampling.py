"""The sort-free nucleus sampler draws from the distribution of transformers' own warpers.

The reference distribution is computed with transformers' ``TemperatureLogitsWarper`` and
``TopPLogitsWarper`` (the classes the CPU server runs without our sampler), and the sampler's
empirical frequencies must pass a chi-square test against it (seeded, so deterministic)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

import eval.nucleus_sampling as nucleus_sampling
from eval.nucleus_sampling import block_size, in_nucleus, max_draws, nucleus_sample, unnormalised_probs


def reference_probs(scores: torch.Tensor, top_p: float, temperature: float) -> torch.Tensor:
    """What transformers samples from: its warpers, then softmax (then torch.multinomial)."""
    warped = TemperatureLogitsWarper(temperature)(None, scores.clone())
    if top_p < 1.0:
        warped = TopPLogitsWarper(top_p)(None, warped)
    return torch.softmax(warped, dim=-1)


def chi_square_critical(df: int, z: float = 3.72) -> float:
    """Upper 1e-4 quantile of chi-square(df) (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def assert_matches(draws: torch.Tensor, probs: torch.Tensor) -> None:
    """Chi-square goodness of fit, pooling cells expected to hold < 5 draws."""
    n = draws.numel()
    observed = torch.bincount(draws, minlength=probs.numel()).double()
    assert observed[probs == 0].sum() == 0, "drew a token outside the support"
    expected = probs.double() * n
    big = expected >= 5
    obs = torch.cat([observed[big], observed[~big].sum().reshape(1)])
    exp = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    df = int(keep.sum()) - 1
    assert df >= 2, "the test needs a nucleus of several tokens"
    assert stat < chi_square_critical(df), f"chi2={stat:.1f} with df={df}"


@pytest.mark.parametrize(
    ("vocab", "scale", "top_p", "temperature"),
    [
        (50, 2.0, 0.8, 0.7),  # vocabulary smaller than a block: the padded path
        (2374, 1.5, 0.9, 0.6),  # two blocks of 1187 (Qwen3's block size)
        (2374, 0.05, 0.95, 0.6),  # nearly flat, like a random-weight model: the nucleus is most tokens
        (2374, 0.05, 0.6, 0.7),  # the pairwise judge's sampling: ~40% of first draws are rejected
        (300, 2.0, 0.8, 1.0),  # peaked: the nucleus is 11 tokens
        (300, 1.0, 1.0, 1.3),  # no top-p: plain temperature sampling
    ],
)
def test_draws_follow_transformers_warpers(vocab, scale, top_p, temperature):
    generator = torch.Generator().manual_seed(vocab)
    scores = torch.randn(vocab, generator=generator) * scale
    draws = nucleus_sample(scores.expand(40_000, vocab), top_p, temperature, generator=generator)
    assert_matches(draws, reference_probs(scores.unsqueeze(0), top_p, temperature)[0])


def test_each_row_uses_its_own_logits():
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 400, generator=generator) * 3
    draws = nucleus_sample(scores.repeat(20_000, 1), 0.9, 0.8, generator=generator).view(20_000, 3)
    expected = reference_probs(scores, 0.9, 0.8)
    for row in range(3):
        assert_matches(draws[:, row], expected[row])


def test_never_draws_masked_tokens_or_tokens_outside_the_nucleus():
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(151_936, generator=generator) * 3  # Qwen3's vocabulary size
    scores[::7] = -math.inf  # e.g. an earlier processor masked them
    draws = nucleus_sample(scores.expand(256, -1), 0.95, 0.6, generator=generator)
    allowed = reference_probs(scores.unsqueeze(0), 0.95, 0.6)[0] > 0
    assert bool(allowed[draws].all())
    assert not bool((draws % 7 == 0).any())


def test_tiny_top_p_is_greedy_through_the_sorted_fallback():
    """A nucleus of one token is almost never hit by a full-distribution draw, so the rows go
    through the sort-based fallback, which must give the argmax."""
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(64, 5000, generator=generator) * 0.1
    draws = nucleus_sample(scores, 1e-9, 0.6, generator=generator)
    assert torch.equal(draws, scores.argmax(-1))


def test_redraws_make_the_sort_rare(monkeypatch):
    """The judge's top_p 0.6 rejects ~40% of draws on a flat distribution; redraws (11 per row)
    must absorb that instead of sorting 152k tokens (~40x the cost of a redraw)."""
    assert [max_draws(p) for p in (1.0, 0.95, 0.6, 0.3, 1e-9)] == [1, 4, 11, 26, 64]
    sorts = []

    class CountingTopP(TopPLogitsWarper):
        def __call__(self, input_ids, scores):
            sorts.append(1)
            return super().__call__(input_ids, scores)

    monkeypatch.setattr(nucleus_sampling, "TopPLogitsWarper", CountingTopP)
    generator = torch.Generator().manual_seed(5)
    scores = torch.randn(256, 151_936, generator=generator) * 0.05
    nucleus_sample(scores, 0.6, 0.7, generator=generator)
    assert not sorts
    nucleus_sample(scores[:4], 1e-9, 0.7, generator=generator)
    assert sorts  # a one-token nucleus still ends in the sort


def test_in_nucleus_is_transformers_rule():
    generator = torch.Generator().manual_seed(4)
    scores = torch.randn(8, 600, generator=generator) * 2
    weights = unnormalised_probs(scores, 0.7)
    kept = reference_probs(scores, 0.85, 0.7) > 0
    for token in range(600):
        tokens = torch.full((8,), token)
        assert torch.equal(in_nucleus(weights, tokens, 0.85), kept[:, token])
    rows = torch.tensor([5, 2])
    assert torch.equal(in_nucleus(weights, torch.tensor([7, 7]), 0.85, rows=rows), kept[rows, 7])


def test_inplace_only_when_asked_and_bad_input_is_named():
    scores = torch.randn(2, 100)
    before = scores.clone()
    nucleus_sample(scores, 0.9, 0.6)
    assert torch.equal(scores, before)
    nucleus_sample(scores, 0.9, 0.6, inplace=True)
    assert not torch.equal(scores, before)  # now holds the sampling weights
    with pytest.raises(ValueError, match="temperature"):
        nucleus_sample(before, 0.9, 0.0)
    assert nucleus_sample(torch.empty(0, 100), 0.9).shape == (0,)
    with pytest.raises(ValueError, match="no finite value"):
        nucleus_sample(torch.full((1, 10), -math.inf), 0.9)


def test_block_size_divides_common_vocabularies():
    assert block_size(151_936) == 1187  # Qwen3: 128 blocks, no padded copy
    for vocab in (49_152, 32_000, 128_256, 50_257):
        assert vocab % block_size(vocab) == 0
    assert block_size(50) == 1024  # smaller than any block: padded
