"""The input files every recipe reads, built small from the embedded corpus (shared by the recipe tests)."""

from __future__ import annotations

from pathlib import Path


def write_recipe_inputs(out: Path, embedded, tokenizer, n_augmented: int, chunk_tokens: int) -> Path:
    """examples.jsonl (phase3), sft.jsonl / heldout.jsonl (SFT) and rl_rows.jsonl (RLMT) under ``out``."""
    from test_sft_metrics import make_augmented_rows

    from trl_ext.data.chunking import DOCUMENT_SCHEMA, chunk_documents
    from trl_ext.data.rl_rows import RLRowConfig, build_rl_rows
    from trl_ext.data.rows import read_rows, write_rows

    docs = read_rows(embedded.corpus_path, DOCUMENT_SCHEMA).rows[:8]
    write_rows(out / "examples.jsonl", chunk_documents(docs, tokenizer)[0])
    rows = make_augmented_rows(tokenizer, embedded.corpus_path, out, n=n_augmented, chunk_tokens=chunk_tokens)
    write_rows(out / "sft.jsonl", rows[:-2])
    write_rows(out / "heldout.jsonl", rows[-2:])
    texts = [  # one inserted teacher thought per document; short prompts keep CPU steps fast
        {"id": d["source_id"], "text": " ".join(d["text"].split()[:20]) + " <think>Who speaks?</think> "
         + " ".join(d["text"].split()[20:60])}
        for d in docs
    ]  # fmt: skip
    config = RLRowConfig(min_before_tokens=16, min_after_tokens=16, reference_tokens=32)
    write_rows(out / "rl_rows.jsonl", build_rl_rows(texts, tokenizer, config)[0])
    return out
