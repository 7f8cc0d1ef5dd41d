"""A benchmark is a small declarative object: where its rows come from, what a row must
contain, how a row becomes a :class:`Problem`, and how a problem becomes a prompt.

Rows load from the benchmark's Hugging Face dataset id (users with the Hub) or from a local
file in the **same schema** (``.jsonl``, ``.json``, ``.csv`` or ``.parquet``). Local files are
checked row by row, so a missing or mistyped field is reported with file, row and field.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl_ext.data.rows import RowFileError, RowSchema, read_rows, validate_row

LETTERS = "ABCD"
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class Problem:
    """One benchmark item, independent of the prompt format."""

    id: str
    question: str
    gold: str
    choices: tuple[str, ...] = ()  # multiple choice: original order, choices[0] is correct
    grade_meta: Mapping[str, Any] = field(default_factory=dict)  # passed on to eval.graders.grade


@dataclass(frozen=True)
class SampleRequest:
    """What to send for one (problem, sample index), and how to grade the answer."""

    problem: Problem
    sample_idx: int
    prompt: str | None  # raw completion mode
    messages: list[dict] | None  # chat mode
    gold: str  # for multiple choice: the letter as shown in this prompt
    permutation: list[int] | None  # shown option i is original option permutation[i]
    stop: list[str] | None
    prompt_hash: str
    prompt_version: str = "project-v1"


def prompt_hash(prompt: str | None, messages: list[dict] | None) -> str:
    text = prompt if prompt is not None else json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def option_permutation(problem_id: str, seed: int, sample_idx: int | None = None) -> list[int]:
    """A permutation of the 4 options seeded by a hash of (seed, problem id[, sample]).

    Hash-seeded (not a shared RNG stream) so it does not depend on load order, the subset
    evaluated or the Python version; stored in every result row so regrading never re-shuffles.
    """
    key = f"{seed}:{problem_id}" + (f":{sample_idx}" if sample_idx is not None else "")
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
    order = list(range(4))
    rng.shuffle(order)
    return order


@dataclass(frozen=True)
class Benchmark:
    """Declarative benchmark description; see the four instances in this package."""

    name: str  # grader key: gsm8k | math500 | gpqa_diamond | olympiadbench
    display_name: str
    hf_path: str
    hf_config: str | None
    hf_split: str
    schema: RowSchema  # the dataset's own columns that this benchmark reads
    to_problem: Callable[[dict, int], Problem]
    raw_template: str  # str.format with {question}; base models, no chat template
    chat_template: str  # user message for chat models
    raw_stop: tuple[str, ...] = ()
    keep: Callable[[dict], bool] | None = None  # e.g. OlympiadBench: English, text-only
    expected_size: int | None = None
    notes: str = ""
    prompt_version: str = "project-v1"  # recorded in every result row (eval.presets sets others)
    option_format: str = "({letter}) {text}"  # one multiple-choice option line
    max_source_rows: int | None = None  # read only the first N dataset rows (before ``keep``)

    # ------------------------------------------------------------------ loading
    def load(self, source: str | Path | None = None, limit: int | None = None) -> list[Problem]:
        """Problems from ``source``: a local file, a local dataset directory (e.g. a clone of the
        Hub repo, loaded with ``datasets`` and this benchmark's config/split), an HF dataset id,
        or None (``hf_path``)."""
        if source is None or str(source) == self.hf_path:
            records, where = self._load_hub(self.hf_path), f"{self.hf_path} ({self.hf_split})"
        elif Path(source).is_dir():
            records, where = self._load_hub(str(source)), str(source)
        elif Path(source).suffix in LOCAL_SUFFIXES or Path(source).exists():
            records, where = _load_local(Path(source), self.schema), str(source)
        else:
            records, where = self._load_hub(str(source)), str(source)
        problems, seen = [], set()
        if self.max_source_rows is not None:
            records = records[: self.max_source_rows]
        for index, record in enumerate(records):
            if self.keep is not None and not self.keep(record):
                continue
            try:
                problem = self.to_problem(record, index)
            except (KeyError, ValueError, TypeError) as err:
                raise RowFileError(where, index + 1, None, f"{self.display_name} row: {err}") from None
            if problem.id in seen:
                raise RowFileError(where, index + 1, "id", f"duplicate problem id {problem.id!r}")
            seen.add(problem.id)
            problems.append(problem)
            if limit is not None and len(problems) >= limit:
                break
        if not problems:
            raise RowFileError(where, None, None, f"no {self.display_name} problems")
        return problems

    def _load_hub(self, path: str) -> list[dict]:
        import datasets

        try:
            dataset = datasets.load_dataset(path, self.hf_config, split=self.hf_split)
        except ValueError as err:
            # A plain local folder of data files has no named configs; a Hub repo clone does.
            if not (Path(path).is_dir() and self.hf_config and self.hf_config in str(err)):
                raise
            dataset = datasets.load_dataset(path, split=self.hf_split)
        records = []
        for index, record in enumerate(dataset):
            records.append(validate_row(dict(record), self.schema, path, index + 1))
        return records

    # ------------------------------------------------------------------ prompting
    def request(
        self,
        problem: Problem,
        sample_idx: int,
        mode: str = "raw",
        seed: int = 0,
        shuffle: str = "per_problem",
    ) -> SampleRequest:
        """The prompt for one sample. ``mode``: ``raw`` (completion, base models) or ``chat``.
        ``shuffle`` (multiple choice): ``per_problem`` (same order for all k samples),
        ``per_sample`` (a new order per sample) or ``none`` (dataset order, correct first)."""
        question, gold, permutation = problem.question, problem.gold, None
        if problem.choices:
            if shuffle == "none":
                permutation = list(range(len(problem.choices)))
            elif shuffle in ("per_problem", "per_sample"):
                permutation = option_permutation(
                    problem.id, seed, sample_idx if shuffle == "per_sample" else None
                )
            else:
                raise ValueError(f"unknown shuffle {shuffle!r} (per_problem, per_sample or none)")
            options = "\n".join(
                self.option_format.format(letter=LETTERS[i], text=problem.choices[j])
                for i, j in enumerate(permutation)
            )
            question = f"{question.strip()}\n\n{options}"
            gold = LETTERS[permutation.index(0)]
        if mode == "raw":
            prompt, messages, stop = (
                self.raw_template.format(question=question),
                None,
                list(self.raw_stop) or None,
            )
        elif mode == "chat":
            prompt, messages = (
                None,
                [{"role": "user", "content": self.chat_template.format(question=question)}],
            )
            stop = None
        else:
            raise ValueError(f"unknown prompt mode {mode!r} (raw or chat)")
        return SampleRequest(
            problem,
            sample_idx,
            prompt,
            messages,
            gold,
            permutation,
            stop,
            prompt_hash(prompt, messages),
            self.prompt_version,
        )


def _load_local(path: Path, schema: RowSchema) -> list[dict]:
    """Rows of a local benchmark file, validated against the dataset's schema."""
    if not path.exists():
        raise RowFileError(path, None, None, "benchmark file not found")
    if path.suffix == ".jsonl":
        return read_rows(path, schema).rows
    if path.suffix == ".json":
        raw = path.read_bytes()
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise RowFileError(path, line, None, f"not UTF-8: byte offset {err.start}") from None
        except json.JSONDecodeError as err:
            raise RowFileError(path, err.lineno, None, f"invalid JSON: {err.msg}") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise RowFileError(path, None, None, "expected a JSON list of rows (or {'data': [...]})")
        return [validate_row(row, schema, path, i + 1) for i, row in enumerate(data)]
    import datasets

    builder = "csv" if path.suffix == ".csv" else "parquet"
    dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    # CSV row numbers are reported as file lines (header is line 1).
    offset = 2 if builder == "csv" else 1
    return [validate_row(dict(row), schema, path, i + offset) for i, row in enumerate(dataset)]
