"""RL rows from interleaved-thinking rows (docs/method.md §4) with the real Qwen3 tokenizer."""

import json

import pytest

from trl_ext.data.rl_rows import (
    RL_ROW_SCHEMA,
    RLRowConfig,
    RowRejected,
    build_rl_row,
    build_rl_rows,
    build_rl_rows_file,
    main,
)
from trl_ext.data.rows import read_rows, write_rows

SENTENCE = "The committee met on Friday to discuss the budget of the county hospital. "


def words(n: int) -> str:
    return (SENTENCE * (n // 12 + 1)).split(" ")[:n]


def text_of(n_words: int) -> str:
    return " ".join(words(n_words))


def test_first_qualifying_thought_prompt_prefix_and_reference(qwen_tokenizer):
    early = "<think>Too early to count.</think>"
    before = text_of(150)
    row = {
        "id": "doc1",
        "text": f"Intro words. {early} {before} <think>Who pays for it?</think> {text_of(40)} "
        f"<think>Later thought must vanish.</think> {text_of(120)}",
        "source_sha": "abc",
        "split": "rl",
    }
    out = build_rl_row(row, qwen_tokenizer)
    assert out["id"] == "doc1:t1" and out["thought_index"] == 1
    assert out["prompt"].endswith(" <think>") and not out["prompt"].endswith("  <think>")
    assert early in out["prompt"]  # earlier teacher thoughts stay in the policy prompt (reference run)
    assert "<think>" not in out["prefix"] and "Too early" not in out["prefix"]  # the judge sees raw text only
    assert out["teacher_thought"] == "Who pays for it?"
    ref_ids = qwen_tokenizer.encode(out["reference"], add_special_tokens=False)
    assert out["reference_tokens"] == 128 and abs(len(ref_ids) - 128) <= 2
    assert "Later thought" not in out["reference"] and "<think>" not in out["reference"]
    assert out["source_sha"] == "abc" and out["split"] == "rl"
    assert out["prompt_tokens"] >= 128


def test_reference_is_shorter_than_128_when_the_text_ends(qwen_tokenizer):
    row = {"id": "d", "text": f"{text_of(150)} <think>t</think> {text_of(70)}"}
    out = build_rl_row(row, qwen_tokenizer)
    assert 64 <= out["reference_tokens"] < 128


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no thoughts at all " * 50, "no_thought"),
        (f"{text_of(20)} <think>short before</think> {text_of(200)}", "short_before"),
        (f"{text_of(200)} <think>short after</think> {text_of(20)}", "short_after"),
        (f"{text_of(200)} <think>never closed {text_of(200)}", "unbalanced_markup"),
        (f"{text_of(200)} <think></think> {text_of(200)}", "no_thought"),  # empty thoughts do not count
    ],
)
def test_rows_that_do_not_qualify_name_the_reason(qwen_tokenizer, text, reason):
    with pytest.raises(RowRejected) as err:
        build_rl_row({"id": "x", "text": text}, qwen_tokenizer)
    assert err.value.reason == reason


def test_rejections_are_counted_with_lines(qwen_tokenizer):
    good = {"id": "g", "text": f"{text_of(150)} <think>t</think> {text_of(100)}"}
    bad = {"id": "b", "text": "nothing"}
    rows, report = build_rl_rows([bad, good, bad], qwen_tokenizer, RLRowConfig(), source="in.jsonl")
    assert [r["id"] for r in rows] == ["g:t0"]
    assert report.rows_in == 3 and report.rows_out == 1 and report.rejected == {"no_thought": 2}
    assert [r["line"] for r in report.rejections] == [1, 3]


def test_file_cli_split_filter_schema_and_report(tmp_path, qwen_tokenizer, embedded):
    src = tmp_path / "thinking.jsonl"
    good = f"{text_of(150)} <think>t</think> {text_of(100)}"
    write_rows(
        src,
        [
            {"id": "a", "text": good, "split": "rl"},
            {"id": "b", "text": good, "split": "sft"},
            {"id": "c", "text": "no thought", "split": "rl"},
        ],
    )
    out = tmp_path / "rl.jsonl"
    assert (
        main(
            [
                "--input",
                str(src),
                "--out",
                str(out),
                "--split",
                "rl",
                "--tokenizer",
                str(embedded.tokenizer_dir),
            ]
        )
        == 0
    )
    rows = read_rows(out, RL_ROW_SCHEMA).rows
    assert [r["id"] for r in rows] == ["a:t0"]
    report = json.loads((tmp_path / "rl.jsonl.report.json").read_text())
    assert report["rows_in"] == 2 and report["rejected"] == {"no_thought": 1}
    with pytest.raises(ValueError, match="none of 1 rows qualifies"):
        write_rows(src, [{"id": "c", "text": "no thought"}])
        build_rl_rows_file(src, out, qwen_tokenizer)


def test_bad_input_row_names_file_line_and_field(tmp_path, qwen_tokenizer):
    src = tmp_path / "thinking.jsonl"
    src.write_text('{"id": "a", "text": "x"}\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"thinking.jsonl:2: field 'text'"):
        build_rl_rows_file(src, tmp_path / "out.jsonl", qwen_tokenizer)
