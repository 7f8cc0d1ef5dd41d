"""RLMT rows from interleaved-thinking rows (docs/method.md §4, docs/reference_run.md §4).

For each thinking row, take the **first** teacher thought that has at least ``min_before_tokens``
tokens of text before it and at least ``min_after_tokens`` tokens of raw text after it (later
thoughts stripped). The RL row is::

    prompt     = text before the thought (earlier thoughts kept), right-stripped, + " <think>"
    prefix     = the same text with every thought stripped (what a judge reads)
    reference  = the next ``reference_tokens`` raw tokens after the thought (later thoughts stripped)
    teacher_thought = the teacher's thought at that position (for the thought-use probe)

Rows that do not qualify are never dropped silently: each gets a reason (``unbalanced_markup``,
``no_thought``, ``short_before``, ``short_after``) that is counted and reported with its line.

CLI::

    python -m trl_ext.data.rl_rows --input thinking_rl.jsonl --out rl_rows.jsonl --tokenizer DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trl_ext.data.markup import THINK_OPEN, markup_issues, parse_thinking, render_thinking, strip_thoughts
from trl_ext.data.rows import RowSchema, read_rows, write_rows

THINKING_ROW_SCHEMA = RowSchema(
    name="interleaved-thinking",
    fields={"id": str, "text": str},
    optional={"source_sha": str, "split": str, "source_id": str},
)
RL_ROW_SCHEMA = RowSchema(
    name="rlmt",
    fields={"id": str, "prompt": str, "prefix": str, "reference": str},
    optional={
        "teacher_thought": str,
        "thought_index": int,
        "prompt_tokens": int,
        "reference_tokens": int,
        "source_sha": str,
        "split": str,
        "source_id": str,
        "partition": str,
    },
)


@dataclass(frozen=True)
class RLRowConfig:
    """Numbers from docs/method.md §4; every one is a CLI flag."""

    min_before_tokens: int = 128
    min_after_tokens: int = 64
    reference_tokens: int = 128
    text_field: str = "text"


@dataclass
class RLRowReport:
    rows_in: int = 0
    rows_out: int = 0
    rejected: Counter = field(default_factory=Counter)
    rejections: list[dict] = field(default_factory=list)  # {line, id, reason, detail}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rejected": dict(self.rejected)}


class RowRejected(ValueError):
    """A thinking row that yields no RL row, with a machine-readable ``reason``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def build_rl_row(row: dict, tokenizer: Any, config: RLRowConfig = RLRowConfig()) -> dict:
    """One RL row from one thinking row, or :class:`RowRejected` saying why not."""
    text = row[config.text_field]
    issues = markup_issues(text)
    if issues:
        raise RowRejected(
            "unbalanced_markup", f"{issues[0].kind} <think> tag at character {issues[0].offset}"
        )
    segments = parse_thinking(text)
    thought_positions = [i for i, s in enumerate(segments) if s.kind == "thought" and s.text.strip()]
    if not thought_positions:
        raise RowRejected("no_thought", "the row has no non-empty <think>…</think> span")
    best_before = best_after = 0
    for index, position in enumerate(thought_positions):
        before = render_thinking(segments[:position]).rstrip()
        before_tokens = len(tokenizer.encode(before, add_special_tokens=False))
        best_before = max(best_before, before_tokens)
        if before_tokens < config.min_before_tokens:
            continue
        after_raw = strip_thoughts(render_thinking(segments[position + 1 :]))
        after_ids = tokenizer.encode(after_raw, add_special_tokens=False)
        best_after = max(best_after, len(after_ids))
        if len(after_ids) < config.min_after_tokens:
            continue
        reference_ids = after_ids[: config.reference_tokens]
        out = {
            "id": f"{row['id']}:t{index}",
            "prompt": before + " " + THINK_OPEN,
            "prefix": strip_thoughts(before).rstrip(),
            "reference": tokenizer.decode(reference_ids),
            "teacher_thought": segments[position].text.strip(),
            "thought_index": index,
            "prompt_tokens": before_tokens,
            "reference_tokens": len(reference_ids),
        }
        for key in ("source_sha", "split", "source_id", "partition"):
            if key in row:
                out[key] = row[key]
        return out
    if best_before < config.min_before_tokens:
        raise RowRejected(
            "short_before",
            f"no thought has ≥{config.min_before_tokens} tokens before it (most: {best_before})",
        )
    raise RowRejected(
        "short_after",
        f"no thought with ≥{config.min_before_tokens} tokens before it has ≥{config.min_after_tokens} "
        f"raw tokens after it (most: {best_after})",
    )


def build_rl_rows(
    rows: Iterable[dict], tokenizer: Any, config: RLRowConfig = RLRowConfig(), source: str = "<rows>"
) -> tuple[list[dict], RLRowReport]:
    """RL rows for every qualifying thinking row, plus a report of every row that did not qualify."""
    report = RLRowReport()
    out: list[dict] = []
    for line, row in enumerate(rows, start=1):
        report.rows_in += 1
        try:
            out.append(build_rl_row(row, tokenizer, config))
        except RowRejected as err:
            report.rejected[err.reason] += 1
            report.rejections.append({"source": source, "line": line, "id": row.get("id"), **vars(err)})
    report.rows_out = len(out)
    return out, report


def build_rl_rows_file(
    input_path: str | Path,
    output_path: str | Path,
    tokenizer: Any,
    config: RLRowConfig = RLRowConfig(),
    split: str | None = None,
) -> RLRowReport:
    """Read thinking rows (optionally only one ``split``), write RL rows and ``<out>.report.json``."""
    schema = RowSchema(
        THINKING_ROW_SCHEMA.name, {"id": str, config.text_field: str}, THINKING_ROW_SCHEMA.optional
    )
    rows = read_rows(input_path, schema).rows
    if split is not None:
        rows = [r for r in rows if r.get("split") == split]
        if not rows:
            raise ValueError(f"{input_path}: no rows with split={split!r}")
    rl_rows, report = build_rl_rows(rows, tokenizer, config, source=str(input_path))
    if not rl_rows:
        raise ValueError(
            f"{input_path}: none of {report.rows_in} rows qualifies as an RL row ({dict(report.rejected)}); "
            f"see the limits --min-before-tokens {config.min_before_tokens} --min-after-tokens "
            f"{config.min_after_tokens}"
        )
    write_rows(output_path, rl_rows)
    report_path = Path(str(output_path) + ".report.json")
    report_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="interleaved-thinking rows (JSONL with id, text)")
    parser.add_argument("--out", required=True, help="RL rows to write (JSONL)")
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer dir/id (default: the embedded Qwen3 one)"
    )
    parser.add_argument("--split", default=None, help="keep only rows with this split value")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--min-before-tokens", type=int, default=128)
    parser.add_argument("--min-after-tokens", type=int, default=64)
    parser.add_argument("--reference-tokens", type=int, default=128)
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    if args.tokenizer is None:
        from trl_ext.assets import embedded_default

        args.tokenizer = str(embedded_default().tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = RLRowConfig(
        args.min_before_tokens, args.min_after_tokens, args.reference_tokens, args.text_field
    )
    report = build_rl_rows_file(args.input, args.out, tokenizer, config, split=args.split)
    print(
        f"{report.rows_out}/{report.rows_in} rows → {args.out}; rejected {dict(report.rejected)} "
        f"(details in {args.out}.report.json)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
