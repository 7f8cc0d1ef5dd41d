"""``python -m trl_ext.data.prepare``: documents JSONL → prefix/suffix examples (JSONL + Dataset)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trl_ext.data.chunking import DOCUMENT_SCHEMA, ChunkConfig, chunk_documents
from trl_ext.data.rows import RowFileError, read_rows, rows_to_dataset, write_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trl_ext.data.prepare", description=__doc__)
    parser.add_argument(
        "--corpus", type=Path, help="JSONL of {source_id, text}; default: the embedded Brown corpus"
    )
    parser.add_argument("--tokenizer", help="tokenizer dir or id; default: the embedded Qwen3 tokenizer")
    parser.add_argument("--out", type=Path, required=True, help="output folder (examples.jsonl, dataset/)")
    parser.add_argument(
        "--skip-bad-rows", action="store_true", help="skip invalid corpus rows (counted, reported)"
    )
    for name, default in vars(ChunkConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from trl_ext.assets import AssetError, embedded_default

    try:
        corpus = args.corpus or embedded_default().corpus_path
        tokenizer_path = args.tokenizer or str(embedded_default().tokenizer_dir)
        documents = read_rows(corpus, DOCUMENT_SCHEMA, skip_bad_rows=args.skip_bad_rows)
    except (AssetError, RowFileError) as err:
        raise SystemExit(f"error: {err}") from None
    for bad in documents.skipped:
        print(f"skipped: {bad}")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = ChunkConfig(**{name: getattr(args, name) for name in vars(ChunkConfig())})
    rows, stats = chunk_documents(documents.rows, tokenizer, config)
    write_rows(args.out / "examples.jsonl", rows)
    rows_to_dataset(rows).save_to_disk(str(args.out / "dataset"))

    print(f"prefix/suffix examples from {corpus}")
    print(f"  documents        {stats.documents:>8}  (bad rows skipped: {len(documents.skipped)})")
    print(f"  too short (<{config.min_source_tokens})  {stats.too_short:>8}")
    print(f"  short suffix     {stats.short_suffix:>8}")
    print(f"  examples         {stats.examples:>8}  train {stats.splits['train']}, val {stats.splits['val']}")
    print(f"  prefix tokens    {stats.prefix_tokens:>8}")
    print(f"  suffix tokens    {stats.suffix_tokens:>8}")
    print(f"  written          {args.out / 'examples.jsonl'}  and  {args.out / 'dataset'}")


if __name__ == "__main__":
    main()
