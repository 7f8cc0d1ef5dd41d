"""Prefix/suffix examples from raw documents (docs/method.md §1).

One example per document: the first 384 tokens are the prefix, the next 128 the original
suffix. Ids hash the source id and the text, and the train/val split is a hash bucket of the
id, so adding documents never moves an existing example between splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from trl_ext.data.rows import RowSchema

PREFIX_SUFFIX_SCHEMA = RowSchema(
    name="prefix/suffix",
    fields={
        "id": str,
        "prefix_ids": list[int],
        "suffix_ids": list[int],
        "split": str,
        "source_sha": str,
        "source_id": str,
    },
)
DOCUMENT_SCHEMA = RowSchema(name="document", fields={"source_id": str, "text": str}, optional={"source": str})


@dataclass(frozen=True)
class ChunkConfig:
    """Numbers from docs/method.md §1; every one is a config choice."""

    min_source_tokens: int = 640
    prefix_tokens: int = 384
    suffix_tokens: int = 128
    min_suffix_tokens: int = 64
    val_fraction: float = 0.05
    namespace: str = "trl_ext/prefix_suffix/v1"


@dataclass
class ChunkStats:
    documents: int = 0
    too_short: int = 0
    short_suffix: int = 0
    examples: int = 0
    splits: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    prefix_tokens: int = 0
    suffix_tokens: int = 0


def example_id(namespace: str, source_id: str, text: str) -> str:
    """Stable 24-hex id of a document's example (the reference run's scheme)."""
    return hashlib.sha256(f"{namespace}\0{source_id}\0{text[:512]}".encode()).hexdigest()[:24]


def assign_split(example_id_: str, val_fraction: float) -> str:
    """Hash bucket of the id: independent of every other document, hence stable as the corpus grows."""
    return "val" if int(example_id_[:8], 16) % 10_000 < round(val_fraction * 10_000) else "train"


def chunk_document(source_id: str, text: str, tokenizer, config: ChunkConfig) -> dict | None | str:
    """The example of one document, or the reason (``"too_short"``/``"short_suffix"``) it has none."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < config.min_source_tokens:
        return "too_short"
    end = config.prefix_tokens + config.suffix_tokens
    prefix_ids, suffix_ids = ids[: config.prefix_tokens], ids[config.prefix_tokens : end]
    if len(suffix_ids) < config.min_suffix_tokens:
        return "short_suffix"
    row_id = example_id(config.namespace, source_id, text)
    return {
        "id": row_id,
        "prefix_ids": prefix_ids,
        "suffix_ids": suffix_ids,
        "split": assign_split(row_id, config.val_fraction),
        "source_sha": hashlib.sha256(text.encode()).hexdigest(),
        "source_id": source_id,
    }


def chunk_documents(
    documents: Iterable[Mapping], tokenizer, config: ChunkConfig = ChunkConfig()
) -> tuple[list[dict], ChunkStats]:
    """Examples of all documents (``{source_id, text}`` mappings) plus counts of what was skipped."""
    rows, stats, seen = [], ChunkStats(), set()
    for doc in documents:
        stats.documents += 1
        result = chunk_document(doc["source_id"], doc["text"], tokenizer, config)
        if isinstance(result, str):
            setattr(stats, result, getattr(stats, result) + 1)
            continue
        if result["id"] in seen:
            raise ValueError(
                f"duplicate example id {result['id']} (source_id {doc['source_id']!r} appears twice)"
            )
        seen.add(result["id"])
        rows.append(result)
        stats.examples += 1
        stats.splits[result["split"]] += 1
        stats.prefix_tokens += len(result["prefix_ids"])
        stats.suffix_tokens += len(result["suffix_ids"])
    return rows, stats
