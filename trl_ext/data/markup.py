"""Interleaved-thinking markup: inline ``<think>…</think>`` spans between raw text.

Every stage that touches thoughts (teacher augmentation, SFT metrics, the RLMT rollout, the
thought-use probe) must agree on what a thought is, so the rules live here and nowhere else:

* The canonical markup is one tag pair, ``<think>`` / ``</think>``, never nested. These are
  single added tokens in the Qwen3 tokenizer (ids 151667 / 151668).
* Teachers use many tag families (``<verification>``, ``<simulate>``, ``<global_context>`` …).
  :func:`normalise_tags` maps every known family (case-insensitive, with or without
  attributes) to the canonical pair and flattens balanced nesting. Tags it does not know are
  left alone, because raw web text legitimately contains ``<b>`` or ``<div>``; use
  :func:`unknown_tags` to detect tags a teacher invented.
* :func:`parse_thinking` is tolerant by default (generated text is often malformed): a stray
  ``</think>`` is dropped, a ``<think>`` inside a thought is dropped, the first ``</think>``
  closes the thought (as the RLMT boundary does), and an unclosed thought runs to the end with
  ``closed=False``. ``strict=True`` raises :class:`MarkupError` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# Tag families seen in teacher outputs (release prompt v1 and the later RAM-style prompt).
THOUGHT_TAG_FAMILIES: tuple[str, ...] = (
    "think",
    "thinking",
    "thought",
    "thoughts",
    "global_context",
    "world_model",
    "recall_knowledge",
    "recall",
    "simulate",
    "simulation",
    "reusable_lessons",
    "reusable_lesson",
    "lesson",
    "verification",
    "verify",
    "self_check",
    "reasoning",
    "reflection",
    "task",
    "set_goal",
    "goal",
    "plan",
    "tool_use",
    "python",
    "web_search",
    "note",
)

# Words as the reference builder counts them for coverage: a letter, then 2+ word chars.
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9'’-]{2,}")
# Any tag-like token: <name ...>, </name>, <name/>. Names are identifiers (letters, _, -, digits).
_ANY_TAG_RE = re.compile(r"<\s*(/?)\s*([A-Za-z][A-Za-z0-9_-]*)((?:\s[^<>]*)?)\s*(/?)\s*>")
_CANON_RE = re.compile(r"<think>|</think>")
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")

SegmentKind = Literal["text", "thought"]


@dataclass(frozen=True)
class Segment:
    """A run of raw text or one thought. ``text`` excludes the tags themselves."""

    kind: SegmentKind
    text: str
    # False only for a thought whose ``</think>`` never came (e.g. generation hit max_tokens).
    closed: bool = True

    @property
    def markup(self) -> str:
        """The segment as it appears in canonical markup (thought tags included)."""
        if self.kind == "text":
            return self.text
        return THINK_OPEN + self.text + (THINK_CLOSE if self.closed else "")


class MarkupError(ValueError):
    """Malformed thinking markup; ``offset`` is the character position of the problem."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at character {offset})")
        self.offset = offset


@dataclass(frozen=True)
class MarkupIssue:
    """One balance problem found by :func:`markup_issues`."""

    kind: Literal["unclosed", "stray_close", "nested_open"]
    offset: int


def _family_set(extra_tags: Iterable[str]) -> frozenset[str]:
    return frozenset(t.lower() for t in (*THOUGHT_TAG_FAMILIES, *extra_tags))


def normalise_tags(text: str, extra_tags: Iterable[str] = (), collapse_newlines: bool = True) -> str:
    """Rewrite every thought-tag family to ``<think>``/``</think>`` and flatten nesting.

    Self-closing thought tags (``<verification/>``) carry no thought and are removed. Nested
    pairs are merged into the outermost one (the inner tags are dropped, their text kept), so a
    balanced teacher output always becomes flat canonical markup. Unbalanced input stays
    unbalanced (stray closes and unclosed opens are kept) so that validation can reject it.
    """
    families = _family_set(extra_tags)
    out: list[str] = []
    depth = 0
    pos = 0
    for m in _ANY_TAG_RE.finditer(text):
        slash_open, name, _attrs, slash_close = m.group(1), m.group(2).lower(), m.group(3), m.group(4)
        if name not in families:
            continue
        out.append(text[pos : m.start()])
        pos = m.end()
        if slash_close and not slash_open:  # <tag/>: empty thought, drop it
            continue
        if slash_open:
            if depth == 0:
                out.append(THINK_CLOSE)  # stray: keep so validation sees it
            elif depth == 1:
                out.append(THINK_CLOSE)
                depth = 0
            else:
                depth -= 1
        else:
            if depth == 0:
                out.append(THINK_OPEN)
            depth += 1
    out.append(text[pos:])
    result = "".join(out)
    if collapse_newlines:
        result = _MANY_NEWLINES_RE.sub("\n\n", result)
    return result


def unknown_tags(text: str, raw_text: str = "", extra_tags: Iterable[str] = ()) -> list[str]:
    """Tag names in ``text`` that are neither thought tags nor present in ``raw_text``.

    A teacher that invents ``<insight>`` would otherwise leak thought text into the "raw" part
    of a row; augmentation rejects such rows instead of guessing.
    """
    families = _family_set(extra_tags)
    raw_names = {m.group(2).lower() for m in _ANY_TAG_RE.finditer(raw_text)}
    found: list[str] = []
    for m in _ANY_TAG_RE.finditer(text):
        name = m.group(2).lower()
        if name not in families and name not in raw_names and name not in found:
            found.append(name)
    return found


def markup_issues(text: str) -> list[MarkupIssue]:
    """Balance problems of canonical markup: unclosed thoughts, stray closes, nested opens."""
    issues: list[MarkupIssue] = []
    open_at: int | None = None
    for m in _CANON_RE.finditer(text):
        if m.group(0) == THINK_OPEN:
            if open_at is not None:
                issues.append(MarkupIssue("nested_open", m.start()))
            else:
                open_at = m.start()
        elif open_at is None:
            issues.append(MarkupIssue("stray_close", m.start()))
        else:
            open_at = None
    if open_at is not None:
        issues.append(MarkupIssue("unclosed", open_at))
    return issues


def is_balanced(text: str) -> bool:
    """True when canonical markup has only flat, closed ``<think>…</think>`` pairs."""
    return not markup_issues(text)


def parse_thinking(text: str, strict: bool = False) -> list[Segment]:
    """Split canonical markup into text and thought segments (see module docstring for rules).

    Empty text segments are omitted; empty thoughts (``<think></think>``) are kept because a
    model emitting one is itself informative. Call :func:`normalise_tags` first for teacher
    output that may use other tag families.
    """
    if strict:
        issues = markup_issues(text)
        if issues:
            first = issues[0]
            raise MarkupError(f"malformed thinking markup: {first.kind}", first.offset)
    segments: list[Segment] = []
    buf: list[str] = []
    in_thought = False
    pos = 0
    for m in _CANON_RE.finditer(text):
        buf.append(text[pos : m.start()])
        pos = m.end()
        tag = m.group(0)
        if tag == THINK_OPEN and not in_thought:
            _flush(segments, "text", buf)
            in_thought = True
        elif tag == THINK_CLOSE and in_thought:
            _flush(segments, "thought", buf, keep_empty=True)
            in_thought = False
        # otherwise: nested open or stray close, dropped (tolerant mode)
    buf.append(text[pos:])
    if in_thought:
        segments.append(Segment("thought", "".join(buf), closed=False))
    else:
        _flush(segments, "text", buf)
    return segments


def _flush(segments: list[Segment], kind: SegmentKind, buf: list[str], keep_empty: bool = False) -> None:
    joined = "".join(buf)
    buf.clear()
    if joined or keep_empty:
        segments.append(Segment(kind, joined))


def render_thinking(segments: Sequence[Segment]) -> str:
    """Inverse of :func:`parse_thinking` for well-formed segments."""
    return "".join(s.markup for s in segments)


def _join_text(left: str, right: str) -> str:
    """Join two raw runs that a removed thought separated, without doubling whitespace."""
    left_ws = left[len(left.rstrip()) :]
    right_ws = right[: len(right) - len(right.lstrip())]
    if not left_ws or not right_ws:
        return left + right
    keep = right_ws if right_ws.count("\n") > left_ws.count("\n") else left_ws
    return left[: len(left) - len(left_ws)] + keep + right[len(right_ws) :]


def strip_thoughts(text: str) -> str:
    """The raw text with every thought (tags included) removed; tolerant of bad markup."""
    out = ""
    for seg in parse_thinking(text):
        if seg.kind == "text":
            out = _join_text(out, seg.text)
    return out


def count_thoughts(text: str, include_empty: bool = False) -> int:
    """Number of thoughts (closed or not). Whitespace-only thoughts count only if asked."""
    return sum(1 for s in parse_thinking(text) if s.kind == "thought" and (include_empty or s.text.strip()))


def thought_char_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` character spans of each thought *including its tags* (tolerant parse).

    Used to label tokens as thought / text via a tokenizer's offset mapping; an unclosed
    thought spans to the end of the text.
    """
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for m in _CANON_RE.finditer(text):
        if m.group(0) == THINK_OPEN and start is None:
            start = m.start()
        elif m.group(0) == THINK_CLOSE and start is not None:
            spans.append((start, m.end()))
            start = None
    if start is not None:
        spans.append((start, len(text)))
    return spans


def words(text: str) -> set[str]:
    """Lower-cased coverage words (a letter then at least two word characters)."""
    return {w.lower() for w in _WORD_RE.findall(text)}


def word_coverage(raw: str, augmented: str) -> float:
    """Share of the raw text's distinct words that survive in the augmented text's raw part.

    The augmented text is normalised and its thoughts stripped first, so words a teacher only
    repeats inside a thought do not count. A raw text with no words has coverage 1.0 (nothing
    could be lost).
    """
    raw_words = words(raw)
    if not raw_words:
        return 1.0
    kept = words(strip_thoughts(normalise_tags(augmented)))
    return len(raw_words & kept) / len(raw_words)


def thought_word_counts(text: str) -> list[int]:
    """Word count of each thought (whitespace split), for data audits (median ~14 in the release)."""
    return [len(s.text.split()) for s in parse_thinking(text) if s.kind == "thought"]
