"""Two-stage rollout on the tiny Qwen3 model with the real Qwen3 tokenizer."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from trl_ext.rollout import Rollout, cut_at_stop, single_token_id, two_stage_generate

CLOSE, EOS, THINK = 151668, 151643, 151667
FAST = {"top_p": 1.0}  # top-p sorting over 152k logits dominates CPU time; behaviour is the same


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


@pytest.fixture(scope="module")
def prompts(qwen_tokenizer):
    texts = [
        "The jury said on Friday that <think>",
        "Austin, Texas -- Committee approval of the act seemed <think>",
    ]
    return [qwen_tokenizer.encode(t, add_special_tokens=False) for t in texts]


def test_real_qwen3_ids(qwen_tokenizer):
    assert single_token_id(qwen_tokenizer, "</think>") == CLOSE
    assert qwen_tokenizer.encode(" <think>", add_special_tokens=False)[-1] == THINK
    with pytest.raises(ValueError, match="single token"):
        single_token_id(qwen_tokenizer, "</thinking>")


def test_budget_reached_inserts_the_boundary(model, qwen_tokenizer, prompts):
    rollouts = two_stage_generate(model, qwen_tokenizer, prompts, 5, 6, suppress_tokens=[CLOSE, EOS], **FAST)
    for r, p in zip(rollouts, prompts):
        assert r.stop_reason == "budget" and not r.closed_by_model
        assert r.prompt_ids == p and len(r.thought_ids) == 5 and r.boundary_ids == [CLOSE]
        assert len(r.suffix_ids) == 6 and CLOSE not in r.suffix_ids
        assert r.loss_mask == [1] * 5 + [0] + [1] * 6
        assert r.completion_ids == r.thought_ids + [CLOSE] + r.suffix_ids
        assert r.num_new_tokens == 11 and r.thought_text and isinstance(r.suffix_text, str)


def test_model_closes_the_thought_itself(model, qwen_tokenizer, prompts):
    bias = {(CLOSE,): 100.0}
    rollouts = two_stage_generate(model, qwen_tokenizer, prompts, 5, 3, sequence_bias=bias, **FAST)
    for r in rollouts:
        assert r.stop_reason == "closed" and r.closed_by_model
        assert r.thought_ids == [CLOSE] and r.thought_content_ids == []  # kept as sampled...
        assert r.boundary_ids == []  # nothing left to insert for the default boundary "</think>"
        assert r.loss_mask == [0] + [1] * len(r.suffix_ids)  # ...with loss weight 0, like the boundary
    # train_on_autonomous_close: the policy's own </think> is trained (weight 1).
    rollouts = two_stage_generate(
        model, qwen_tokenizer, prompts, 5, 3, sequence_bias=bias, train_on_autonomous_close=True, **FAST
    )
    assert all(r.closed_by_model and r.loss_mask == [1] * (1 + len(r.suffix_ids)) for r in rollouts)
    # With a longer boundary only its tail is inserted after the model's own </think>.
    rollouts = two_stage_generate(
        model, qwen_tokenizer, prompts, 5, 3, boundary_text="</think>\n\n", sequence_bias=bias, **FAST
    )
    assert all(r.boundary_ids == qwen_tokenizer.encode("\n\n") for r in rollouts)
    assert all(r.loss_mask[:2] == [0, 0] for r in rollouts)


def test_eos_inside_the_thought_is_dropped_and_the_boundary_inserted(model, qwen_tokenizer, prompts):
    # Bias EOS so stage 1 stops at once; stage 2 sees the same bias and stops at once too.
    rollouts = two_stage_generate(model, qwen_tokenizer, prompts, 5, 4, sequence_bias={(EOS,): 100.0}, **FAST)
    for r in rollouts:
        assert r.stop_reason == "eos" and not r.closed_by_model
        assert r.thought_ids == [] and EOS not in r.thought_ids
        assert r.boundary_ids == [CLOSE] and r.suffix_ids == [EOS]  # suffix keeps its sampled EOS
        assert r.loss_mask == [0, 1]


def test_one_batched_generate_per_stage_with_kv_cache_and_ids_kept_as_sampled(model, qwen_tokenizer, prompts):
    calls = []
    original = model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    model.generate = spy
    try:
        repeated = [p for p in prompts for _ in range(3)]  # K=3 samples of 2 prompts
        rollouts = two_stage_generate(model, qwen_tokenizer, repeated, 4, 5, do_sample=False)
    finally:
        del model.generate
    assert len(calls) == 2 and all(c["use_cache"] and c["input_ids"].shape[0] == 6 for c in calls)
    assert calls[0]["max_new_tokens"] == 4 and calls[1]["max_new_tokens"] == 5
    assert CLOSE in calls[0]["eos_token_id"] and CLOSE not in calls[1]["eos_token_id"]
    # Stage 2's context is prompt + thought + boundary as ids, exactly what the trainer will score:
    stage2 = calls[1]["input_ids"][calls[1]["attention_mask"].bool()].tolist()
    assert stage2 == [t for r in rollouts for t in r.prompt_ids + r.thought_ids + r.boundary_ids]
    # Greedy suffix from those ids equals a fresh generate on the concatenation (no re-encoding anywhere).
    r = rollouts[0]
    ctx = torch.tensor([r.prompt_ids + r.thought_ids + r.boundary_ids])
    fresh = model.generate(
        input_ids=ctx, max_new_tokens=5, do_sample=False, pad_token_id=EOS, eos_token_id=[EOS]
    )
    assert cut_at_stop(fresh[0, ctx.shape[1] :].tolist(), {EOS})[0] == r.suffix_ids


def test_argument_errors(model, qwen_tokenizer, prompts):
    with pytest.raises(ValueError, match="boundary_text"):
        two_stage_generate(model, qwen_tokenizer, prompts, boundary_text="\n</think>")
    with pytest.raises(ValueError, match="max_new_tokens"):
        two_stage_generate(model, qwen_tokenizer, prompts, max_new_tokens=3)
    assert two_stage_generate(model, qwen_tokenizer, []) == []


def test_rollout_properties_without_a_model():
    r = Rollout([1, 2], [7, CLOSE], [], [9, EOS], closed_by_model=True, stop_reason="closed")
    assert r.completion_ids == [7, CLOSE, 9, EOS] and r.loss_mask == [1, 0, 1, 1]
    trained = Rollout([1, 2], [7, CLOSE], [], [9], closed_by_model=True, close_trainable=True)
    assert trained.loss_mask == [1, 1, 1]
    assert r.thought_content_ids == [7] and r.num_new_tokens == 4
