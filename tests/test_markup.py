"""Thinking markup: normalisation, tolerant/strict parsing, stripping, coverage."""

from __future__ import annotations

import pytest

from trl_ext.data.markup import (
    MarkupError,
    Segment,
    count_thoughts,
    is_balanced,
    markup_issues,
    normalise_tags,
    parse_thinking,
    render_thinking,
    strip_thoughts,
    thought_char_spans,
    thought_word_counts,
    unknown_tags,
    word_coverage,
)


def test_normalise_maps_every_family_case_and_attributes():
    text = (
        "A <Verification>check it</Verification> B <global_context type='x'>ctx</global_context> "
        "C <SIMULATE >sim</ simulate> D <think>t</think>"
    )
    assert normalise_tags(text) == (
        "A <think>check it</think> B <think>ctx</think> C <think>sim</think> D <think>t</think>"
    )


def test_normalise_keeps_unknown_tags_and_reports_them():
    text = "x <b>bold</b> <insight>new</insight> <think>ok</think>"
    out = normalise_tags(text)
    assert "<b>bold</b>" in out and "<insight>new</insight>" in out
    assert unknown_tags(out, raw_text="x <b>bold</b>") == ["insight"]
    assert unknown_tags(out, raw_text="") == ["b", "insight"]
    assert normalise_tags("<insight>n</insight>", extra_tags=["insight"]) == "<think>n</think>"


def test_normalise_flattens_balanced_nesting():
    text = "a <simulate>x <verification>y</verification> z</simulate> b"
    out = normalise_tags(text)
    assert out == "a <think>x y z</think> b"
    assert is_balanced(out)
    assert parse_thinking(out) == [Segment("text", "a "), Segment("thought", "x y z"), Segment("text", " b")]


def test_normalise_leaves_unbalanced_visible():
    assert markup_issues(normalise_tags("a <verify>x b")) == [markup_issues("a <think>x b")[0]]
    assert [i.kind for i in markup_issues(normalise_tags("a </verify> b"))] == ["stray_close"]
    # Unclosed inner of a nest: outer close consumed by inner, outer never closes.
    assert [i.kind for i in markup_issues(normalise_tags("<plan>a<verify>b</plan> c"))] == ["unclosed"]


def test_normalise_drops_self_closing_and_collapses_newlines():
    assert normalise_tags("a<verification/>b\n\n\n\nc") == "ab\n\nc"
    assert normalise_tags("a\n\n\nb", collapse_newlines=False) == "a\n\n\nb"


def test_markup_issues_kinds_and_offsets():
    text = "</think>a<think>b<think>c</think>d<think>e"
    kinds = [(i.kind, i.offset) for i in markup_issues(text)]
    assert kinds == [("stray_close", 0), ("nested_open", 17), ("unclosed", 34)]
    assert is_balanced("a<think>b</think>c<think></think>")


def test_parse_tolerant_rules():
    # stray close dropped, nested open dropped, first close wins, unclosed runs to end
    segs = parse_thinking("x</think>y<think>a<think>b</think>c</think>d<think>tail")
    assert segs == [
        Segment("text", "xy"),
        Segment("thought", "ab"),
        Segment("text", "cd"),
        Segment("thought", "tail", closed=False),
    ]
    assert segs[-1].markup == "<think>tail"


def test_parse_strict_raises_with_offset():
    with pytest.raises(MarkupError, match="unclosed.*character 2"):
        parse_thinking("ab<think>c", strict=True)
    with pytest.raises(MarkupError, match="stray_close"):
        parse_thinking("a</think>", strict=True)


def test_parse_empty_thoughts_and_roundtrip():
    text = "a<think></think>b<think> x </think>"
    segs = parse_thinking(text, strict=True)
    assert segs == [
        Segment("text", "a"),
        Segment("thought", ""),
        Segment("text", "b"),
        Segment("thought", " x "),
    ]
    assert render_thinking(segs) == text
    assert count_thoughts(text) == 1
    assert count_thoughts(text, include_empty=True) == 2
    assert count_thoughts("<think>   </think>") == 0
    assert parse_thinking("") == []


def test_strip_thoughts_whitespace_joins():
    assert strip_thoughts("The cat <think>why?</think> sat.") == "The cat sat."
    assert strip_thoughts("End.<think>x</think>\n\nNext") == "End.\n\nNext"
    assert strip_thoughts("End. <think>x</think>\n\nNext") == "End.\n\nNext"
    assert strip_thoughts("a<think>x</think>b") == "ab"
    assert strip_thoughts("<think>only</think>") == ""
    assert strip_thoughts("tail <think>unclosed") == "tail "


def test_thought_char_spans_include_tags():
    text = "ab<think>cd</think>ef<think>g"
    spans = thought_char_spans(text)
    assert spans == [(2, 19), (21, len(text))]
    assert text[2:19] == "<think>cd</think>"


def test_word_coverage_hand_cases():
    raw = "The quick brown fox jumps over the lazy dog."
    # words: the, quick, brown, fox, jumps, over, lazy, dog -> 8 distinct
    assert word_coverage(raw, raw) == 1.0
    aug = "The quick <think>brown fox is a phrase</think> jumps over the lazy dog."
    # brown and fox appear only inside the thought -> 6/8
    assert word_coverage(raw, aug) == pytest.approx(6 / 8)
    # teacher tag families are normalised before stripping
    assert word_coverage(raw, "The quick <verify>brown fox</verify> jumps") == pytest.approx(3 / 8)
    # short words (<3 chars) and numbers are not coverage words; empty raw is vacuously covered
    assert word_coverage("a 12 ox", "nothing") == 1.0
    # case-insensitive, apostrophes and hyphens are part of words
    assert word_coverage("Don't self-check", "don't SELF-CHECK") == 1.0
    assert word_coverage("Don't self-check", "dont self check") == 0.0


def test_thought_word_counts():
    assert thought_word_counts("a <think>one two three</think> b <think></think>") == [3, 0]


def test_tags_split_across_tokens(qwen_tokenizer):
    """Teacher tags are several BPE tokens; decoding token by token must still parse."""
    tok = qwen_tokenizer
    assert tok.convert_tokens_to_ids(["<think>", "</think>"]) == [151667, 151668]
    text = "Water boils.<verification> At sea level, 100 C.</verification> Then it cools."
    ids = tok.encode(text, add_special_tokens=False)
    pieces = [tok.decode([i]) for i in ids]
    assert not any("<verification>" == p for p in pieces)  # really split
    streamed = "".join(pieces)
    norm = normalise_tags(streamed)
    assert norm == "Water boils.<think> At sea level, 100 C.</think> Then it cools."
    # canonical tags are single added tokens and survive an encode/decode round trip
    cids = tok.encode(norm, add_special_tokens=False)
    assert cids.count(151667) == 1 and cids.count(151668) == 1
    assert tok.decode(cids) == norm
    # a stream cut in the middle of a tag is unbalanced, not silently accepted
    cut = max(i for i, p in enumerate(pieces) if p == "verification")  # "...C.</verification" (no ">")
    assert not is_balanced(normalise_tags("".join(pieces[: cut + 1])))
