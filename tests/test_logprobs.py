"""Chunked log-probs agree with the full-vocabulary log-softmax (values and gradients)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from trl_ext.logprobs import ensure_fused_lm_head, sequence_logprobs, token_logprobs


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


def _batch(seed=0, b=4, t=48, prefix=24):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 151_000, (b, t), generator=g)
    att = torch.ones_like(ids)
    att[0, :6] = 0  # a left-padded row
    score = torch.zeros_like(ids)
    score[:, prefix:] = 1
    score[1, prefix + 3 : prefix + 5] = 0  # inserted (boundary) tokens are not scored
    score[2, -4:] = 0  # right padding after an early EOS
    return ids, att, score


def test_chunked_matches_unchunked_values_and_grads(model):
    ids, att, score = _batch()
    full = token_logprobs(model, ids, att, score, chunked=False)
    chunked = token_logprobs(model, ids, att, score, chunked=True)
    assert torch.allclose(full, chunked, atol=1e-5, rtol=0)
    assert (chunked[score == 0] == 0).all()
    assert chunked[score == 1].lt(0).all()

    grads = []
    for flag in (False, True):
        model.zero_grad()
        sequence_logprobs(model, ids, att, score, chunked=flag).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_micro_batches_equal_one_batch(model):
    ids, att, score = _batch(seed=1)
    one = sequence_logprobs(model, ids, att, score)
    split = sequence_logprobs(model, ids, att, score, micro_batch_size=3)
    assert torch.allclose(one, split, atol=1e-5)


def test_patch_is_idempotent_and_generation_unchanged(model):
    ensure_fused_lm_head(model)
    forward = model.forward
    ensure_fused_lm_head(model)
    assert model.forward == forward
    ids = torch.tensor([[785, 6722, 315, 9625, 374]])
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 9)
    # a deepcopy made after patching (TRL's reference model) must run its own weights, fused or not
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.01)
    ensure_fused_lm_head(ref)
    ids, att, score = _batch(seed=2)
    for flag in (True, False):
        assert not torch.allclose(
            token_logprobs(model, ids, att, score, flag), token_logprobs(ref, ids, att, score, flag)
        )
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, ref(ids).logits)


def test_rejects_scoring_first_token(model):
    ids, att, score = _batch()
    score[:, 0] = 1
    with pytest.raises(ValueError, match="first token"):
        token_logprobs(model, ids, att, score)


def test_small_tiles_agree_and_globals_exist(model):
    """Many token x vocabulary tiles give the same numbers; the TRL 1.16 globals we set still exist."""
    import trl.kernels.chunked_logprob as kernel
    import trl.trainer.utils as trl_utils

    from trl_ext.logprobs import DEFAULT_TOKEN_CHUNK, DEFAULT_VOCAB_CHUNK, configure_chunks

    assert hasattr(kernel, "TOKEN_CHUNK_SIZE") and hasattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE")
    ids, att, score = _batch(seed=3)
    full = token_logprobs(model, ids, att, score, chunked=False)
    try:
        configure_chunks(token_chunk=16, vocab_chunk=5000)
        assert kernel.TOKEN_CHUNK_SIZE == 16 and trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == 5000
        tiled = token_logprobs(model, ids, att, score, chunked=True)
    finally:
        configure_chunks(DEFAULT_TOKEN_CHUNK, DEFAULT_VOCAB_CHUNK)
    assert torch.allclose(full, tiled, atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        configure_chunks(0, 10)
