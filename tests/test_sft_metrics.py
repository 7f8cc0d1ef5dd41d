"""SFT metrics against hand computation on the tiny embedded Qwen3, and the callback in a real trainer."""

from __future__ import annotations

import asyncio
import math

import pytest
import torch

from trl_ext.data.augment import AugmentLimits, OfflineRuleAugmenter, augment_file
from trl_ext.data.rows import read_rows
from trl_ext.sft_metrics import (
    SFTMetricsConfig,
    ThinkingSFTMetricsCallback,
    _row_stats,
    aggregate,
    per_token_nll,
    repetition_ngram_rate,
    typed_token_ids,
)

PAD = 151643


def make_augmented_rows(tokenizer, corpus_path, tmp_path, n: int, chunk_tokens: int = 64) -> list[dict]:
    """Real corpus documents → prefix/suffix rows → offline-augmented rows with short chunks."""
    from trl_ext.data.augment import AUGMENTED_SCHEMA
    from trl_ext.data.chunking import DOCUMENT_SCHEMA, ChunkConfig, chunk_documents

    docs = read_rows(corpus_path, DOCUMENT_SCHEMA).rows[:n]
    rows, _ = chunk_documents(docs, tokenizer, ChunkConfig())
    out = tmp_path / f"aug_{n}_{chunk_tokens}.jsonl"
    limits = AugmentLimits(min_augmented_tokens=8)
    asyncio.run(
        augment_file(rows, out, tmp_path / "rej.jsonl", OfflineRuleAugmenter(), tokenizer, limits,
                     chunk_tokens=chunk_tokens, progress=False)
    )  # fmt: skip
    return read_rows(out, AUGMENTED_SCHEMA).rows


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def test_repetition_rate_hand_cases():
    assert repetition_ngram_rate([[1, 2, 3, 4, 1, 2, 3, 4]]) == pytest.approx(1 / 5)
    # pooled over rows: (1 + 1) repeats / (5 + 2) 4-grams
    assert repetition_ngram_rate([[1, 2, 3, 4, 1, 2, 3, 4], [5, 5, 5, 5, 5]]) == pytest.approx(2 / 7)
    assert repetition_ngram_rate([[7, 7, 7, 7, 7, 7]]) == pytest.approx(2 / 3)
    assert repetition_ngram_rate([[1, 2, 3]]) is None
    assert repetition_ngram_rate([[1, 2, 3, 4, 5]]) == 0.0


def test_typed_token_ids_kinds_and_post_window(qwen_tokenizer):
    tok = qwen_tokenizer
    text = "Alpha beta.<think>Why so?</think> Gamma delta epsilon zeta eta theta.<think>x</think>End"
    ids, thought, post = typed_token_ids(text, tok, post_window=3)
    first = tok.encode("Alpha beta.", add_special_tokens=False)
    th1 = tok.encode("<think>Why so?</think>", add_special_tokens=False)
    mid = tok.encode(" Gamma delta epsilon zeta eta theta.", add_special_tokens=False)
    th2 = tok.encode("<think>x</think>", add_special_tokens=False)
    last = tok.encode("End", add_special_tokens=False)
    assert ids == first + th1 + mid + th2 + last
    assert ids == tok.encode(text, add_special_tokens=False)  # added think tokens split the text anyway
    assert th1[0] == 151667 and th1[-1] == 151668
    assert thought == [False] * len(first) + [True] * len(th1) + [False] * len(mid) + [True] * len(th2) + [
        False
    ] * len(last)
    expected_post = [False] * (len(first) + len(th1)) + [True] * 3 + [False] * (len(mid) - 3)
    expected_post += [False] * len(th2) + [True] * min(3, len(last)) + [False] * max(0, len(last) - 3)
    assert post == expected_post
    ids_cut, thought_cut, post_cut = typed_token_ids(text, tok, max_tokens=5)
    assert len(ids_cut) == len(thought_cut) == len(post_cut) == 5


def test_per_token_nll_matches_hand_log_softmax_and_padding(tiny_model, qwen_tokenizer):
    seqs = [
        qwen_tokenizer.encode(t, add_special_tokens=False) for t in ("The cat sat on the mat.", "Hi there")
    ]
    batched = per_token_nll(tiny_model, seqs, PAD, batch_size=2)
    for seq, got in zip(seqs, batched):
        with torch.no_grad():
            logits = tiny_model(torch.tensor([seq])).logits[0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        hand = torch.stack([-logp[t, seq[t + 1]] for t in range(len(seq) - 1)]).float()
        assert got.shape == (len(seq) - 1,)
        torch.testing.assert_close(got, hand, rtol=1e-4, atol=1e-4)
    single = per_token_nll(tiny_model, seqs[:1], PAD, batch_size=1)[0]
    torch.testing.assert_close(single, batched[0], rtol=1e-4, atol=1e-4)  # padding never leaks in


def test_row_stats_and_aggregate_by_hand():
    own = torch.tensor([1.0, 2.0, 3.0, 4.0])
    raw = torch.tensor([2.0, 2.0])
    # tokens 0..4; CE entry t is token t+1. thought tokens 2,3; post token 4
    thought = [False, False, True, True, False]
    post = [False, False, False, False, True]
    stats = _row_stats(own, raw, own, thought, post)
    assert stats["thought"] == pytest.approx((2.0 + 3.0) / 2)
    assert stats["text"] == pytest.approx((1.0 + 4.0) / 2)
    assert stats["post"] == pytest.approx(4.0)
    other = _row_stats(
        torch.tensor([6.0]), torch.tensor([1.0]), torch.tensor([6.0]), [False, False], [False, False]
    )
    assert other["thought"] is None and other["post"] is None
    metrics = aggregate([stats, other], [[1, 2, 3, 4, 1, 2, 3, 4], [151667, 5]], think_open_id=151667)
    assert metrics["val_loss"] == pytest.approx((10.0 + 6.0) / 5)  # token-weighted over all rows
    assert metrics["val_loss_selected"] == metrics["val_loss"]
    assert metrics["val_loss_raw"] == pytest.approx(5.0 / 3)
    assert metrics["thought_nll"] == pytest.approx(2.5)  # rows without thoughts excluded
    assert metrics["text_nll"] == pytest.approx((2.5 + 6.0) / 2)  # mean over rows
    assert metrics["repetition_4gram_rate"] == pytest.approx(1 / 5)
    assert metrics["generation_think_rate"] == 0.5 and metrics["generation_mean_tokens"] == 5.0


def test_callback_in_sft_trainer_hand_checked(tiny_model_dir, qwen_tokenizer, embedded, tmp_path):
    """Two real SFTTrainer steps: the step-0 metrics equal a hand computation on the initial model,
    training logs are not swallowed, and the final metrics are logged before training ends."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    rows = make_augmented_rows(qwen_tokenizer, embedded.corpus_path, tmp_path, n=8, chunk_tokens=48)
    train, val = rows[:4], rows[-2:]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    args = SFTConfig(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to="none", bf16=False, use_cpu=True,
        gradient_checkpointing=False, include_num_input_tokens_seen="non_padding", seed=0,
    )  # fmt: skip
    ds = Dataset.from_list([{"input_ids": r["interleaved_thinking_ids"]} for r in train])
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=qwen_tokenizer)
    config = SFTMetricsConfig(batch_size=2, generation_rows=2, generation_max_new_tokens=8)
    callback = ThinkingSFTMetricsCallback(trainer, val, "interleaved_thinking_ids", config)
    trainer.add_callback(callback)
    trainer.train()

    history = trainer.state.log_history
    evals = [h for h in history if "val_loss" in h]
    assert [h["step"] for h in evals] == [0, 2]
    assert all(any("loss" in h and h["step"] == s for h in history) for s in (1, 2)), "train logs kept"
    start = evals[0]

    # hand computation on the untouched initial model
    own_sum = own_n = raw_sum = raw_n = 0.0
    thought_means = []
    for r in val:
        ids = r["interleaved_thinking_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(initial(torch.tensor([ids])).logits[0].double(), -1)
        ce = [-float(logp[t, ids[t + 1]]) for t in range(len(ids) - 1)]
        own_sum, own_n = own_sum + sum(ce), own_n + len(ce)
        is_thought = typed_token_ids(r["augmented_text"], qwen_tokenizer)[1]
        thought_means.append(sum(c for c, t in zip(ce, is_thought[1:]) if t) / sum(is_thought[1:]))
        raw = r["raw_chunk_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(initial(torch.tensor([raw])).logits[0].double(), -1)
        raw_sum += sum(-float(logp[t, raw[t + 1]]) for t in range(len(raw) - 1))
        raw_n += len(raw) - 1
    assert start["val_loss"] == pytest.approx(own_sum / own_n, rel=1e-4)
    assert start["val_loss_raw"] == pytest.approx(raw_sum / raw_n, rel=1e-4)
    assert start["thought_nll"] == pytest.approx(sum(thought_means) / len(thought_means), rel=1e-4)
    assert 0.0 <= start["repetition_4gram_rate"] <= 1.0 and start["val_rows"] == 2
    # training moved the model, so the final numbers differ, and they are finite
    final = evals[-1]
    assert final["val_loss"] != start["val_loss"] and math.isfinite(final["val_loss"])
    assert callback.last_metrics["val_loss"] == final["val_loss"]


def test_callback_rejects_bad_config():
    # arguments are validated before the trainer is touched
    with pytest.raises(ValueError, match="target_field"):
        ThinkingSFTMetricsCallback(None, [{"x": 1}], "labels")
    with pytest.raises(ValueError, match="at least one"):
        ThinkingSFTMetricsCallback(None, [], "raw_chunk_ids")
