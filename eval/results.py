"""Per-sample result rows: the single source of truth of the reasoning suite.

Layout under an output root (one directory per arm, one JSONL per benchmark)::

    <root>/<arm>/<benchmark>.jsonl           one row per graded sample (append-only)
    <root>/<arm>/<benchmark>.failures.jsonl  requests that failed after all retries
    <root>/<arm>/summary.json                aggregates recomputed from the rows

Resume = skip every ``(id, sample_idx)`` already in the JSONL (a torn last line from a kill is
truncated away); failed requests are not results, so a resumed run retries them. Regrade =
re-score stored completions with the current graders and rewrite the file atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from trl_ext.data.rows import RowFileError, RowSchema, append_row, read_appended_rows, read_rows, write_rows

SAMPLE_SCHEMA = RowSchema(
    name="eval sample",
    fields={
        "arm": str,
        "benchmark": str,
        "id": str,
        "sample_idx": int,
        "prompt_hash": str,
        "completion": str,
        "extracted": str | None,
        "gold": str,
        "correct": bool,
        "completion_tokens": int | None,
        "finish_reason": str | None,
        "permutation": list[int] | None,
        "grade_error": str | None,
    },
    optional={
        "latency_s": float,
        "attempts": int,
        "grade_meta": dict,
        "mode": str,
        "endpoint": str | None,
        "preset": str,
        "prompt_version": str,
        "grader": str,
    },
)
FAILURE_SCHEMA = RowSchema(
    name="eval failure",
    fields={"arm": str, "benchmark": str, "id": str, "sample_idx": int, "error": str},
    optional={"attempts": int, "time": float, "prompt_hash": str},
)


def sample_path(root: str | Path, arm: str, benchmark: str) -> Path:
    return Path(root) / arm / f"{benchmark}.jsonl"


def failure_path(root: str | Path, arm: str, benchmark: str) -> Path:
    return Path(root) / arm / f"{benchmark}.failures.jsonl"


class ResumeMismatchError(RuntimeError):
    """Stored rows were produced with a different prompt than this run would send."""


@dataclass
class SampleStore:
    """Append-only JSONL of one (arm, benchmark) with resume bookkeeping."""

    path: Path
    failures_path: Path
    rows: dict[tuple[str, int], dict]

    @classmethod
    def open(cls, root: str | Path, arm: str, benchmark: str) -> SampleStore:
        path = sample_path(root, arm, benchmark)
        rows: dict[tuple[str, int], dict] = {}
        for row in read_appended_rows(path, SAMPLE_SCHEMA):
            rows[(row["id"], row["sample_idx"])] = row  # a later row for a key wins
        return cls(path, failure_path(root, arm, benchmark), rows)

    def done(self, problem_id: str, sample_idx: int, prompt_hash: str) -> bool:
        """True if this sample is stored. A stored row whose prompt differs is an error: mixing
        prompts in one file would make the aggregates meaningless."""
        row = self.rows.get((problem_id, sample_idx))
        if row is None:
            return False
        if row["prompt_hash"] != prompt_hash:
            raise ResumeMismatchError(
                f"{self.path}: sample ({problem_id!r}, {sample_idx}) was generated from a different prompt "
                f"(hash {row['prompt_hash']} != {prompt_hash}); the prompt mode, template or GPQA shuffle "
                "changed. Use a new --out directory or pass --overwrite."
            )
        return True

    def add(self, row: dict) -> None:
        append_row(self.path, row)
        self.rows[(row["id"], row["sample_idx"])] = row

    def add_failure(
        self, arm: str, benchmark: str, problem_id: str, sample_idx: int, error: str, **extra
    ) -> None:
        append_row(
            self.failures_path,
            {
                "arm": arm,
                "benchmark": benchmark,
                "id": problem_id,
                "sample_idx": sample_idx,
                "error": error,
                "time": time.time(),
                **extra,
            },
        )


def read_samples(path: str | Path) -> list[dict]:
    """Rows of a finished sample file (duplicates of a key: the last row wins)."""
    rows: dict[tuple[str, int], dict] = {}
    for row in read_rows(path, SAMPLE_SCHEMA).rows:
        rows[(row["id"], row["sample_idx"])] = row
    return list(rows.values())


def read_failures(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    return read_rows(path, FAILURE_SCHEMA, skip_bad_rows=True).rows


def discover(root: str | Path, arms: Iterable[str] | None = None) -> dict[str, dict[str, Path]]:
    """``{arm: {benchmark: jsonl path}}`` for every benchmark sample file under ``root``.

    Only files named after a known benchmark count: the continuation check, reward gate and
    thought probe write their own JSONL files under the same eval folder."""
    from eval.benchmarks import BENCHMARKS

    root = Path(root)
    if not root.is_dir():
        raise RowFileError(root, None, None, "eval output directory not found")
    wanted = set(arms) if arms else None
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.glob("*/*.jsonl")):
        if path.stem not in BENCHMARKS:
            continue
        arm = path.parent.name
        if wanted is None or arm in wanted:
            found.setdefault(arm, {})[path.stem] = path
    if wanted:
        missing = wanted - set(found)
        if missing:
            raise RowFileError(root, None, None, f"no sample files for arm(s) {sorted(missing)}")
    return found


def regrade_file(path: str | Path, pool, dry_run: bool = False, grader: str | None = None) -> dict:
    """Re-score every stored completion (no generation), with ``grader`` or each row's own grader.

    Returns counts: rows, changed verdicts (``flipped_to_correct`` / ``flipped_to_wrong``),
    grader timeouts/errors. The file is rewritten atomically unless ``dry_run``.
    """
    from eval.graders import DEFAULT_GRADER

    rows = read_samples(path)
    futures = [
        pool.submit(
            row["benchmark"],
            row["completion"],
            row["gold"],
            grader=grader or row.get("grader") or DEFAULT_GRADER,
            **dict(row.get("grade_meta") or {}),
        )
        for row in rows
    ]
    grades = [f.result() for f in futures]
    stats = {"rows": len(rows), "flipped_to_correct": 0, "flipped_to_wrong": 0, "timeouts": 0, "errors": 0}
    for row, grade in zip(rows, grades):
        if grade.correct != row["correct"]:
            stats["flipped_to_correct" if grade.correct else "flipped_to_wrong"] += 1
        stats["timeouts"] += grade.timed_out
        stats["errors"] += grade.error is not None and not grade.timed_out
        row.update(correct=grade.correct, extracted=grade.extracted, grade_error=grade.error)
        row["grader"] = grade.grader
    if not dry_run:
        write_rows(path, rows)
    return stats


def write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(
        json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8"
    )
    tmp.replace(path)


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
