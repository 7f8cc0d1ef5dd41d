"""docs/method.md §1 chunking invariants and split stability on the real corpus and tokenizer."""

import json

import pytest

from trl_ext.data.chunking import ChunkConfig, assign_split, chunk_documents, example_id


@pytest.fixture(scope="module")
def documents(embedded):
    return [json.loads(line) for line in open(embedded.corpus_path)]


def test_chunking_invariants(documents, qwen_tokenizer):
    rows, stats = chunk_documents(documents[:60], qwen_tokenizer)
    assert stats.examples == len(rows) == 60 - stats.too_short - stats.short_suffix
    for row in rows:
        ids = qwen_tokenizer(next(d["text"] for d in documents if d["source_id"] == row["source_id"]),
                             add_special_tokens=False)["input_ids"]  # fmt: skip
        assert len(ids) >= 640
        assert row["prefix_ids"] == ids[:384] and row["suffix_ids"] == ids[384:512]
        assert row["split"] in {"train", "val"} and len(row["id"]) == 24


def test_short_documents_and_short_suffixes_are_skipped_and_counted(qwen_tokenizer):
    long_text = " ".join(f"word{i}" for i in range(700))
    docs = [{"source_id": "short", "text": "too short"}, {"source_id": "long", "text": long_text}]
    rows, stats = chunk_documents(docs, qwen_tokenizer)
    assert stats.too_short == 1 and [r["source_id"] for r in rows] == ["long"]
    few = " ".join(f"w{i}" for i in range(260))
    n_tokens = len(qwen_tokenizer(few, add_special_tokens=False)["input_ids"])
    config = ChunkConfig(
        min_source_tokens=10, prefix_tokens=n_tokens - 63, suffix_tokens=128, min_suffix_tokens=64
    )
    rows, stats = chunk_documents([{"source_id": "x", "text": few}], qwen_tokenizer, config)
    assert rows == [] and stats.short_suffix == 1


def test_ids_and_splits_are_stable_when_the_corpus_grows(documents, qwen_tokenizer):
    small, _ = chunk_documents(documents[:40], qwen_tokenizer)
    grown, _ = chunk_documents(documents[:40] + documents[200:240], qwen_tokenizer)
    by_id = {r["id"]: r["split"] for r in grown}
    assert all(by_id[r["id"]] == r["split"] for r in small)


def test_val_fraction_is_about_five_percent():
    ids = [example_id("ns", f"doc{i}", "text") for i in range(20_000)]
    share = sum(assign_split(i, 0.05) == "val" for i in ids) / len(ids)
    assert 0.04 < share < 0.06
    assert example_id("ns", "a", "t") == example_id("ns", "a", "t") != example_id("ns", "b", "t")


def test_duplicate_source_ids_are_an_error(qwen_tokenizer):
    text = " ".join(f"word{i}" for i in range(700))
    with pytest.raises(ValueError, match="duplicate example id"):
        chunk_documents([{"source_id": "a", "text": text}, {"source_id": "a", "text": text}], qwen_tokenizer)
