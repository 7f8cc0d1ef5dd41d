"""Disjoint SFT / RL / held-out partitions by ``source_sha`` (docs/method.md §3).

The reference run let RL prefixes overlap the SFT rows, so RL "improvements" could be memorised
text. Here a document's partition is a hash bucket of ``salt + source_sha``: every row of a
document lands in the same partition, a document never changes partition when the corpus grows or
is re-ordered, and changing the salt gives an independent draw. Optional caps keep the rows with
the lowest bucket hash, so a capped partition is also stable.

``python -m trl_ext.data.splits --input examples.jsonl --out DIR`` writes ``DIR/{sft,rl,heldout}.jsonl``
(the input rows plus a ``partition`` field) and ``DIR/splits.json``;
``python -m trl_ext.data.splits --check A.jsonl B.jsonl ...`` verifies files are pairwise disjoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from trl_ext.data.rows import RowFileError, RowSchema, read_rows, write_rows

PARTITIONS: tuple[str, ...] = ("sft", "rl", "heldout")
_SHA_ONLY = RowSchema(name="row with source_sha", fields={"id": str, "source_sha": str})


class SplitError(ValueError):
    """Partitions overlap or a configuration cannot produce valid partitions."""


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of documents per partition (SFT gets the rest) and optional row caps.

    Defaults follow the reference run's later disjoint split (32768 / 28672 / 4096 rows).
    """

    heldout_fraction: float = 0.0625
    rl_fraction: float = 0.4375
    max_sft_rows: int | None = None
    max_rl_rows: int | None = None
    max_heldout_rows: int | None = None
    salt: str = "trl_ext/thinking_splits/v1"

    def __post_init__(self) -> None:
        for name in ("heldout_fraction", "rl_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SplitError(f"{name} must be in [0, 1], got {value}")
        if self.heldout_fraction + self.rl_fraction > 1.0:
            total = self.heldout_fraction + self.rl_fraction
            raise SplitError(f"heldout_fraction + rl_fraction = {total} > 1 leaves no SFT rows")

    def cap(self, partition: str) -> int | None:
        return getattr(self, f"max_{partition}_rows")


def bucket(source_sha: str, salt: str) -> float:
    """Uniform value in [0, 1) determined only by the document and the salt."""
    digest = hashlib.sha256(f"{salt}\0{source_sha}".encode()).hexdigest()
    return int(digest[:13], 16) / 16**13


def partition_of(source_sha: str, config: SplitConfig = SplitConfig()) -> str:
    """The partition a document belongs to."""
    u = bucket(source_sha, config.salt)
    if u < config.heldout_fraction:
        return "heldout"
    if u < config.heldout_fraction + config.rl_fraction:
        return "rl"
    return "sft"


def split_rows(rows: Iterable[Mapping], config: SplitConfig = SplitConfig()) -> dict[str, list[dict]]:
    """Rows grouped by partition (each with a ``partition`` field), caps applied by bucket order."""
    out: dict[str, list[tuple[float, str, dict]]] = {p: [] for p in PARTITIONS}
    for row in rows:
        part = partition_of(row["source_sha"], config)
        out[part].append((bucket(row["source_sha"], config.salt), row["id"], {**row, "partition": part}))
    result: dict[str, list[dict]] = {}
    for part, items in out.items():
        cap = config.cap(part)
        if cap is not None:
            items = sorted(items, key=lambda t: (t[0], t[1]))[:cap]
        result[part] = [row for _, _, row in items]
    check_disjoint(result)
    return result


def check_disjoint(partitions: Mapping[str, Iterable[Mapping]]) -> None:
    """Raise :class:`SplitError` naming the first ``source_sha`` (or id) found in two partitions."""
    seen_sha: dict[str, str] = {}
    seen_id: dict[str, str] = {}
    for name, rows in partitions.items():
        for row in rows:
            for key, seen in (("source_sha", seen_sha), ("id", seen_id)):
                value = row[key]
                other = seen.setdefault(value, name)
                if other != name:
                    raise SplitError(f"{key} {value} is in both {other!r} and {name!r}")


def write_splits(rows: Sequence[Mapping], out_dir: Path, config: SplitConfig, source: str = "") -> dict:
    """Write the three partition files and a manifest; returns the manifest."""
    parts = split_rows(rows, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part_rows in parts.items():
        write_rows(out_dir / f"{name}.jsonl", part_rows)
    manifest = {
        "source": source,
        "config": asdict(config),
        "counts": {name: len(part_rows) for name, part_rows in parts.items()},
        "documents": {name: len({r["source_sha"] for r in part_rows}) for name, part_rows in parts.items()},
        "files": {name: str(out_dir / f"{name}.jsonl") for name in parts},
    }
    (out_dir / "splits.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m trl_ext.data.splits", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--input", type=Path, help="rows JSONL with id and source_sha (e.g. examples.jsonl)")
    parser.add_argument("--out", type=Path, help="output folder for sft/rl/heldout.jsonl and splits.json")
    parser.add_argument("--check", type=Path, nargs="+", help="only verify that these row files are disjoint")
    for name, default in asdict(SplitConfig()).items():
        kind = str if isinstance(default, str) else float if isinstance(default, float) else int
        parser.add_argument(f"--{name}", type=kind, default=default, help=f"default: {default}")
    args = parser.parse_args(argv)
    try:
        if args.check:
            check_disjoint({str(p): read_rows(p, _SHA_ONLY).rows for p in args.check})
            print(f"disjoint: {', '.join(map(str, args.check))}")
            return
        if args.input is None or args.out is None:
            parser.error("--input and --out are required unless --check is given")
        config = SplitConfig(**{name: getattr(args, name) for name in asdict(SplitConfig())})
        rows = read_rows(args.input, _SHA_ONLY).rows
        manifest = write_splits(rows, args.out, config, source=str(args.input))
    except (RowFileError, SplitError) as err:
        raise SystemExit(f"error: {err}") from None
    print(json.dumps({"counts": manifest["counts"], "documents": manifest["documents"]}, indent=2))


if __name__ == "__main__":
    main()
