"""Disjoint, stable SFT / RL / held-out partitions by source_sha."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from trl_ext.data.splits import (
    PARTITIONS,
    SplitConfig,
    SplitError,
    check_disjoint,
    main,
    partition_of,
    split_rows,
)


def _rows(n: int, rows_per_doc: int = 1, start: int = 0) -> list[dict]:
    out = []
    for d in range(start, start + n):
        sha = hashlib.sha256(f"doc{d}".encode()).hexdigest()
        for k in range(rows_per_doc):
            out.append({"id": f"r{d}_{k}", "source_sha": sha})
    return out


def _sha_sets(parts):
    return {p: {r["source_sha"] for r in rows} for p, rows in parts.items()}


def test_disjoint_by_document_and_complete():
    rows = _rows(400, rows_per_doc=3)  # several rows per document must stay together
    parts = split_rows(rows)
    shas = _sha_sets(parts)
    assert (
        not (shas["sft"] & shas["rl"])
        and not (shas["sft"] & shas["heldout"])
        and not (shas["rl"] & shas["heldout"])
    )
    assert sum(len(v) for v in parts.values()) == len(rows)
    assert all(r["partition"] == p for p, rs in parts.items() for r in rs)
    # fractions roughly honoured (400 documents; binomial noise)
    assert 0.35 < len(shas["rl"]) / 400 < 0.53 and 0.02 < len(shas["heldout"]) / 400 < 0.11


def test_stable_under_growth_reorder_and_caps():
    base = _rows(300)
    parts = split_rows(base)
    grown = _rows(300) + _rows(200, start=300)
    random.Random(0).shuffle(grown)
    parts_grown = split_rows(grown)
    for p in PARTITIONS:
        assert {r["id"] for r in parts[p]} <= {r["id"] for r in parts_grown[p]}
    # a cap keeps the lowest-hash rows: capping the grown corpus never keeps a row the base dropped
    cfg = SplitConfig(max_rl_rows=20)
    capped = {r["id"] for r in split_rows(base, cfg)["rl"]}
    assert len(capped) == 20
    assert capped == {r["id"] for r in split_rows(list(reversed(base)), cfg)["rl"]}
    # a different salt is an independent draw
    other = split_rows(base, SplitConfig(salt="another"))
    assert {r["id"] for r in other["sft"]} != {r["id"] for r in parts["sft"]}


def test_partition_edge_fractions_and_bad_config():
    sha = "ab" * 32
    assert partition_of(sha, SplitConfig(heldout_fraction=0.0, rl_fraction=0.0)) == "sft"
    assert partition_of(sha, SplitConfig(heldout_fraction=1.0, rl_fraction=0.0)) == "heldout"
    with pytest.raises(SplitError, match="leaves no SFT rows"):
        SplitConfig(heldout_fraction=0.6, rl_fraction=0.5)
    with pytest.raises(SplitError, match="rl_fraction"):
        SplitConfig(rl_fraction=-0.1)


def test_check_disjoint_names_the_overlap():
    a = [{"id": "x", "source_sha": "s1"}]
    b = [{"id": "y", "source_sha": "s1"}]
    with pytest.raises(SplitError, match="source_sha s1 is in both 'sft' and 'rl'"):
        check_disjoint({"sft": a, "rl": b})
    check_disjoint({"sft": a, "rl": [{"id": "z", "source_sha": "s2"}]})


def test_cli_writes_partitions_and_checks(tmp_path, capsys):
    rows = [dict(r, prefix_ids=[1, 2]) for r in _rows(60)]
    src = tmp_path / "examples.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["--input", str(src), "--out", str(tmp_path / "splits"), "--rl_fraction", "0.5"])
    manifest = json.loads((tmp_path / "splits" / "splits.json").read_text())
    assert sum(manifest["counts"].values()) == 60
    files = [tmp_path / "splits" / f"{p}.jsonl" for p in PARTITIONS]
    first = json.loads(files[0].read_text().splitlines()[0])
    assert first["prefix_ids"] == [1, 2] and first["partition"] == "sft"
    main(["--check", *map(str, files)])
    assert "disjoint" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="is in both"):
        main(["--check", str(files[0]), str(src)])
