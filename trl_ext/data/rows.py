"""JSONL row files with schema checks that name the file, the line and the field.

Every row file of the project (prefix/suffix examples, augmented rows, RL rows, eval samples)
goes through here, so a truncated write, a missing field or a wrong type is reported where it
is instead of surfacing later as a shape error. Nothing is dropped silently: bad rows either
stop the read or, with ``skip_bad_rows=True``, are returned in ``skipped`` for the caller to
count and report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin


class RowFileError(ValueError):
    """A row file problem at a known place."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = self.path + (f":{line}" if line is not None else "")
        what = f" field '{field}'" if field else ""
        super().__init__(f"{where}:{what} {message}")


@dataclass(frozen=True)
class RowSchema:
    """Required and optional fields with their types (``str``, ``int``, ``float``, ``bool``,
    ``list[int]``, ``list[str]``, ``dict``, ``X | None``)."""

    name: str
    fields: Mapping[str, Any]
    optional: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RowReadResult:
    rows: list[dict]
    skipped: list[RowFileError]


def _type_name(expected: Any) -> str:
    if get_origin(expected) is not None:  # list[int] has a __name__ of "list"; show the whole type
        return str(expected).replace("typing.", "")
    return getattr(expected, "__name__", str(expected))


def _matches(value: Any, expected: Any) -> bool:
    if expected is Any:
        return True
    origin = get_origin(expected)
    if origin is list:
        (item_type,) = get_args(expected) or (Any,)
        return isinstance(value, list) and all(_matches(v, item_type) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if origin is not None and type(None) in get_args(expected):  # X | None
        return value is None or any(_matches(value, t) for t in get_args(expected) if t is not type(None))
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def validate_row(row: Any, schema: RowSchema, path: str | Path = "<row>", line: int | None = None) -> dict:
    """Return ``row`` if it satisfies ``schema``, else raise :class:`RowFileError`."""
    if not isinstance(row, dict):
        raise RowFileError(
            path, line, None, f"expected a JSON object for a {schema.name} row, got {type(row).__name__}"
        )
    for name, expected in schema.fields.items():
        if name not in row:
            raise RowFileError(path, line, name, f"missing (required by the {schema.name} schema)")
        if not _matches(row[name], expected):
            got = type(row[name]).__name__
            raise RowFileError(path, line, name, f"expected {_type_name(expected)}, got {got}")
    for name, expected in schema.optional.items():
        if name in row and not _matches(row[name], expected):
            got = type(row[name]).__name__
            raise RowFileError(path, line, name, f"expected {_type_name(expected)}, got {got}")
    return row


def read_rows(path: str | Path, schema: RowSchema, skip_bad_rows: bool = False) -> RowReadResult:
    """Read and validate a JSONL file. Blank lines are allowed; an empty file is an error."""
    path = Path(path)
    if not path.exists():
        raise RowFileError(path, None, None, "file not found")
    rows: list[dict] = []
    skipped: list[RowFileError] = []
    offset = 0  # byte offset of the current line, for undecodable bytes
    with open(path, "rb") as handle:  # decoded per line, so bad bytes are a bad row like any other
        for line_no, raw in enumerate(handle, start=1):
            line_start, offset = offset, offset + len(raw)
            try:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise RowFileError(
                        path,
                        line_no,
                        None,
                        f"not UTF-8: byte 0x{raw[err.start]:02x} at byte offset {line_start + err.start} "
                        f"(column {err.start + 1} of the line)",
                    ) from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    hint = " (truncated write?)" if not line.endswith("\n") else ""
                    raise RowFileError(
                        path, line_no, None, f"invalid JSON: {err.msg} at column {err.colno}{hint}"
                    ) from None
                rows.append(validate_row(row, schema, path, line_no))
            except RowFileError as err:
                if not skip_bad_rows:
                    raise
                skipped.append(err)
    if not rows and not skipped:
        raise RowFileError(path, None, None, f"no {schema.name} rows (empty file)")
    return RowReadResult(rows=rows, skipped=skipped)


def write_rows(path: str | Path, rows: Iterable[Mapping]) -> int:
    """Write rows atomically (temp file + rename), so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return count


def append_row(path: str | Path, row: Mapping) -> None:
    """Append one row durably; resumable jobs call this once per finished item."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_appended_rows(path: str | Path, schema: RowSchema) -> list[dict]:
    """Rows of an append-only file for resume: a torn last line (killed mid-write) is dropped
    and the file is truncated back to the last complete row; any other bad row is an error."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    complete_end = data.rfind(b"\n") + 1
    if complete_end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(complete_end)
    if complete_end == 0:
        return []
    return read_rows(path, schema).rows


def rows_to_dataset(rows: list[dict]):
    """A ``datasets.Dataset`` view of rows (imported lazily: datasets is heavy)."""
    from datasets import Dataset

    return Dataset.from_list(rows)
