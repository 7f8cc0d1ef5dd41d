"""Per-token log-probabilities of scored tokens without a full-vocabulary log-softmax.

``OnlineDPOTrainer._forward`` (TRL 1.16) computes ``logits.log_softmax(-1)`` over the whole sequence: for K=16
rollouts of a 512-token context and Qwen3's 151,936-entry vocabulary that is two fp32 tensors of ~5 GB each,
and at the paper's 2k context ~20 GB. Here the model's LM head is replaced, for these calls only, by TRL's
fused
chunked head (:func:`trl.trainer.utils.add_fused_lm_head`), which projects the backbone's hidden states in
tiles of tokens x vocabulary with an online log-sum-exp and recomputes each tile in the backward pass; so peak
memory no longer scales with ``tokens x vocab``. ``bench/bench_logprobs.py`` measures the difference.

The unchunked path is kept (``chunked=False``) as the reference the tests compare against.
"""

from __future__ import annotations

import torch
from torch import nn

_PATCHED_ATTR = "_trl_ext_fused_lm_head"
DEFAULT_TOKEN_CHUNK = 1024
DEFAULT_VOCAB_CHUNK = 8192


def configure_chunks(token_chunk: int = DEFAULT_TOKEN_CHUNK, vocab_chunk: int = DEFAULT_VOCAB_CHUNK) -> None:
    """Set the tile shape of TRL's chunked head: one tile holds ``token_chunk x vocab_chunk`` fp32 logits.

    TRL 1.16 reads these two module globals at call time (``trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE`` and
    ``trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE``, defaults 4096 x 32768 = 512 MiB per tile, sized for
    GPUs); they are process-wide, so this is too. Smaller tiles trade a little speed for peak memory.
    """
    import trl.kernels.chunked_logprob as kernel
    import trl.trainer.utils as trl_utils

    if token_chunk < 1 or vocab_chunk < 1:
        raise ValueError(
            f"chunk sizes must be >= 1, got token_chunk={token_chunk}, vocab_chunk={vocab_chunk}"
        )
    kernel.TOKEN_CHUNK_SIZE = token_chunk
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = vocab_chunk


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers model under DDP / DeepSpeed / PEFT wrappers: the object whose forward is patched."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):  # PEFT: patch the transformers model under the adapters
        model = model.get_base_model()
    return model


def _whole_under_zero3(model: nn.Module) -> bool:
    """ZeRO-3 is on but this model is held whole on each rank (e.g. an offline judge's scorer, loaded
    unpartitioned): TRL's fused head gathers the LM head as ZeRO-3 parameters whenever ZeRO-3 is on."""
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return False
    head = _unwrap(model).get_output_embeddings()
    return head is not None and not hasattr(head.weight, "ds_status")


def ensure_fused_lm_head(model: nn.Module) -> None:
    """Patch the (unwrapped) model once so ``model(..., labels=, fused_lm_head=True)`` returns log-probs.

    Call it on a model *after* any deepcopy (e.g. TRL's reference model): the patch closes over the original
    ``forward``, so a copy made afterwards would still run the original module's weights.
    """
    from trl.trainer.utils import add_fused_lm_head

    target = _unwrap(model)
    marker = getattr(target, _PATCHED_ATTR, None)
    if marker == id(target):
        return
    if marker is not None:
        # A deepcopy of a patched model: its forward still closes over the original's forward. Drop the
        # instance attribute so the class forward is back, then patch the copy itself.
        del target.forward
    add_fused_lm_head(target, temperature=1.0, outputs=("log_probs",))
    setattr(target, _PATCHED_ATTR, id(target))  # an int, not the module (that would register a submodule)


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    score_mask: torch.Tensor,
    chunked: bool = True,
) -> torch.Tensor:
    """Log-prob of each scored token given everything before it.

    Args:
        input_ids, attention_mask: ``[B, T]`` full sequences (prefix + candidate), left- or right-padded.
        score_mask: ``[B, T]``, 1 where the token is one whose log-prob is wanted (the candidate tokens, minus
            inserted boundary tokens); its first column must be 0 (the first token has no context).
        chunked: use the fused chunked head (default) or a plain full-vocabulary log-softmax.

    Returns:
        ``[B, T]`` float32 log-probs aligned with ``input_ids``, zero where ``score_mask`` is 0.
    """
    if score_mask[:, 0].any():
        raise ValueError("score_mask[:, 0] must be 0: the first token of a sequence has no prediction")
    score_mask = score_mask.bool() & attention_mask.bool()
    if chunked and _whole_under_zero3(model):
        chunked = False  # TRL's fused head would try to gather its weights as ZeRO-3 shards
    if chunked:
        ensure_fused_lm_head(model)
        labels = input_ids.masked_fill(~score_mask, -100)
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
        per_token = out.log_probs.float()  # [B, T-1], aligned with input_ids[:, 1:]
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
        logps = logits.float().log_softmax(dim=-1)
        per_token = torch.gather(logps, 2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    per_token = torch.cat([per_token.new_zeros(per_token.size(0), 1), per_token], dim=1)
    return per_token * score_mask


def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    score_mask: torch.Tensor,
    chunked: bool = True,
    micro_batch_size: int | None = None,
) -> torch.Tensor:
    """Summed log-prob of the scored tokens of each row, ``[B]`` (docs/method.md §2: sum, no length norm).

    ``micro_batch_size`` splits the rows into several forwards so activations for K=16 long sequences need not
    be alive at once; the autograd graph still spans all of them.
    """
    step = micro_batch_size or input_ids.size(0)
    parts = [
        token_logprobs(
            model, input_ids[s : s + step], attention_mask[s : s + step], score_mask[s : s + step], chunked
        ).sum(dim=1)
        for s in range(0, input_ids.size(0), step)
    ]
    return torch.cat(parts)
