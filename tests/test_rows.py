"""Row files: bad input is reported with file, line and field, and never dropped silently."""

import json

import pytest

from trl_ext.data.chunking import PREFIX_SUFFIX_SCHEMA
from trl_ext.data.rows import (
    RowFileError,
    append_row,
    read_appended_rows,
    read_rows,
    rows_to_dataset,
    write_rows,
)

GOOD = {
    "id": "a",
    "prefix_ids": [1, 2],
    "suffix_ids": [3],
    "split": "train",
    "source_sha": "s",
    "source_id": "d",
}


def write_lines(path, lines):
    path.write_text("".join(lines))
    return path


def test_round_trip_and_dataset(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_rows(path, [GOOD, GOOD | {"id": "b"}])
    rows = read_rows(path, PREFIX_SUFFIX_SCHEMA).rows
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows_to_dataset(rows)[1]["prefix_ids"] == [1, 2]


@pytest.mark.parametrize(
    "line,field,message",
    [
        (json.dumps(GOOD)[:-5], None, "invalid JSON.*truncated"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "suffix_ids"}) + "\n", "suffix_ids", "missing"),
        (json.dumps(GOOD | {"prefix_ids": "1 2"}) + "\n", "prefix_ids", "expected list\\[int\\], got str"),
        (json.dumps(GOOD | {"prefix_ids": [1, "2"]}) + "\n", "prefix_ids", "expected list\\[int\\]"),
        (json.dumps([1, 2]) + "\n", None, "expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, line, field, message):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD) + "\n", line])
    with pytest.raises(RowFileError, match=message) as err:
        read_rows(path, PREFIX_SUFFIX_SCHEMA)
    assert err.value.line == 2 and err.value.field == field and str(path) + ":2" in str(err.value)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(RowFileError, match="empty file"):
        read_rows(write_lines(tmp_path / "empty.jsonl", ["\n"]), PREFIX_SUFFIX_SCHEMA)
    with pytest.raises(RowFileError, match="file not found"):
        read_rows(tmp_path / "absent.jsonl", PREFIX_SUFFIX_SCHEMA)


def test_skip_bad_rows_counts_what_it_skips(tmp_path):
    path = write_lines(
        tmp_path / "mixed.jsonl", [json.dumps(GOOD) + "\n", "{oops\n", json.dumps(GOOD | {"id": "c"}) + "\n"]
    )
    result = read_rows(path, PREFIX_SUFFIX_SCHEMA, skip_bad_rows=True)
    assert [r["id"] for r in result.rows] == ["a", "c"]
    assert [e.line for e in result.skipped] == [2]


def test_append_and_resume_drops_only_a_torn_last_line(tmp_path):
    path = tmp_path / "append.jsonl"
    append_row(path, GOOD)
    append_row(path, GOOD | {"id": "b"})
    with open(path, "a") as handle:
        handle.write(json.dumps(GOOD | {"id": "c"})[:20])  # killed mid-write
    assert [r["id"] for r in read_appended_rows(path, PREFIX_SUFFIX_SCHEMA)] == ["a", "b"]
    append_row(path, GOOD | {"id": "c"})
    assert [r["id"] for r in read_rows(path, PREFIX_SUFFIX_SCHEMA).rows] == ["a", "b", "c"]


def test_non_utf8_bytes_are_a_bad_row_with_file_line_and_offset(tmp_path):
    good = (json.dumps(GOOD) + "\n").encode()
    bad = b'{"id": "caf\xe9", "x": 1}\n'  # Latin-1 'e acute': not UTF-8
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(good + bad + (json.dumps(GOOD | {"id": "c"}) + "\n").encode())
    with pytest.raises(RowFileError, match=r"not UTF-8: byte 0xe9 at byte offset") as err:
        read_rows(path, PREFIX_SUFFIX_SCHEMA)
    assert err.value.line == 2 and f"{path}:2" in str(err.value)
    offset = len(good) + bad.index(0xE9)
    assert f"byte offset {offset} " in str(err.value)
    result = read_rows(path, PREFIX_SUFFIX_SCHEMA, skip_bad_rows=True)  # skipped and counted like others
    assert [r["id"] for r in result.rows] == ["a", "c"] and [e.line for e in result.skipped] == [2]
