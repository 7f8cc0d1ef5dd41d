"""The embedded default: real Qwen3 tokenizer ids, a loadable tiny Qwen3, corpus and GSM8K files."""

import json
import shutil

import pytest

from trl_ext import assets

REFERENCE_ENCODINGS = [
    ("Hello world!", [9707, 1879, 0]),
    ("The answer is \\boxed{42}.", [785, 4226, 374, 1124, 79075, 90, 19, 17, 7810]),
    (
        "Prefix text <think>I should recall the context.</think> The suffix continues.",
        [14335, 1467, 220, 151667, 40, 1265, 19091, 279, 2266, 13, 151668, 576, 20525, 9539, 13],
    ),
]


@pytest.mark.parametrize("text,ids", REFERENCE_ENCODINGS)
def test_tokenizer_reproduces_reference_encodings(qwen_tokenizer, text, ids):
    assert qwen_tokenizer(text, add_special_tokens=False)["input_ids"] == ids


def test_tokenizer_special_ids(qwen_tokenizer):
    assert len(qwen_tokenizer) == assets.QWEN3_TOKENIZER_SIZE
    names = ["<think>", "</think>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert qwen_tokenizer.convert_tokens_to_ids(names) == [
        assets.THINK_OPEN_ID,
        assets.THINK_CLOSE_ID,
        assets.ENDOFTEXT_ID,
        assets.IM_START_ID,
        assets.IM_END_ID,
    ]


def test_tiny_model_loads_and_generates_like_a_hub_model(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.config.head_dim == 64 and model.config.vocab_size == assets.QWEN3_VOCAB_SIZE
    assert tokenizer.eos_token_id == assets.ENDOFTEXT_ID  # as Qwen3-0.6B-Base
    inputs = tokenizer(["Hello world!"], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(
        **inputs, max_new_tokens=5, min_new_tokens=5, do_sample=True, pad_token_id=tokenizer.pad_token_id
    )
    assert out.shape == (1, inputs["input_ids"].shape[1] + 5)


def test_corpus_and_gsm8k_files(embedded):
    docs = [json.loads(line) for line in open(embedded.corpus_path)]
    assert len(docs) == 500 and all(d["text"] and d["source_id"].startswith("brown/") for d in docs)
    assert "/nn" not in docs[0]["text"]  # POS tags stripped
    problems = [json.loads(line) for line in open(embedded.gsm8k_path)]
    assert len(problems) == 100
    assert all("####" in p["answer"] and p["question"] for p in problems)
    assert problems[0]["question"].startswith("Toula went to the bakery")


def test_missing_and_corrupt_assets_name_the_fetch_command(embedded, tmp_path):
    with pytest.raises(assets.AssetError, match="python -m trl_ext.assets fetch"):
        assets.verify(tmp_path / "nowhere")
    copy = tmp_path / "cache"
    shutil.copytree(embedded.root, copy, ignore=shutil.ignore_patterns("downloads", "tiny-qwen3"))
    shutil.copytree(embedded.model_dir, copy / "tiny-qwen3")
    assets.verify(copy)  # an intact copy verifies
    with open(copy / "gsm8k" / "test_subset100.jsonl", "a") as handle:
        handle.write("tampered\n")
    with pytest.raises(assets.AssetError, match="corrupt.*test_subset100.jsonl.*--force"):
        assets.verify(copy)
    (copy / "corpus" / "brown.jsonl").unlink()
    with pytest.raises(assets.AssetError, match="missing"):
        assets.verify(copy)
