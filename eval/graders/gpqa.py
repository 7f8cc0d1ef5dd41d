"""GPQA-Diamond: the last explicit answer letter.

Explicit means an answer marker ("Answer:", "the answer is", "the correct option is", "final
answer", "therefore it's"), a ``\\boxed{}`` holding only a letter, "(B) is correct", a line that
is only a letter (``**B**``, ``(B)``), or a reply that opens with a single option ("D. It can't
be A"). The letter may be wrapped the way chat models write it: ``$B$``,
``\\(B\\)``, ``**B**``, ``"B"``, ``\\mathrm{B}``, ``\\text{B}``. A lowercase letter counts only
at the end of a line (``answer: b``), so "the answer is a difficult one" is no answer. A hedge
(``Answer: A or B``) is no answer: it is not credited to its first letter. Stray capital letters
elsewhere are never answers. ``gold`` is the letter as shown in the (permuted) prompt.
"""

from __future__ import annotations

import re
from typing import Any

from eval.graders.base import Grade
from eval.graders.text import boxed_spans, strip_thinking

# Every repeated group is possessive (``*+``) and letters are looked for in a short window after
# each marker, so no input makes these patterns backtrack: grading stays linear in the text.
_WRAP_OPEN = (
    r"(?:\*\*|\*|\$|\\\(|\\\[|\(|\[|\"|'|`|“|‘|\\(?:text|textbf|mathrm|mathbf|mathtt)\s*+\{|\{|[ \t])*+"
)
_WRAP_CLOSE = r"(?:\*\*|\*|\$|\\\)|\\\]|\)|\]|\"|'|`|”|’|\}|[ \t])*+"
_FILLER = (
    r"(?:(?:for\s+sure|definitely|clearly|certainly|indeed|therefore|thus|then|most\s+likely|likely|probably)"
    r"\s*+,?\s*+)?"
)
_CONNECT = r"(?:\s|\bis\b|\b(?:would|should|must|will)\s+be\b|[:：=]|-|—)*+"
_MARKER_RE = re.compile(
    r"(?i:\b(?:final\s+|correct\s+|right\s+|best\s+)?answer\b|\b(?:correct|right|best)\s+(?:option|choice)\b"
    r"|\b(?:therefore|thus|hence|so),?\s+(?:I\s+(?:think|believe)\s+)?(?:it's|it\s+is)\b)"
)
_AFTER_MARKER_RE = re.compile(
    r"(?i:"
    + _CONNECT
    + _FILLER
    + r")"
    + _WRAP_OPEN
    + r"(?:(?i:option|choice)\s*+)?"
    + _WRAP_OPEN
    + r"([A-Da-d])(?![A-Za-z0-9])"
)
_WINDOW = 80  # characters after a marker in which its letter must appear
_HEDGE_TAIL = re.compile(
    _WRAP_CLOSE + r"\s*+(?:,|/|\bor\b|\band\b|&)\s*+" + _WRAP_OPEN + r"[A-D](?![A-Za-z0-9])"
)
_LOWER_OK_TAIL = re.compile(_WRAP_CLOSE + r"[.!]?" + _WRAP_CLOSE + r"\s*+(?:\n|$)")
_IS_CORRECT_RE = re.compile(
    r"(?:\b(?i:option|choice)\s*+)?\(?([A-D])\)?\s++(?i:is\s+(?:the\s+)?(?:correct|right|best))"
)
_BOX_LETTER_RE = re.compile(r"\(([A-Da-d])\).*|([A-Da-d])(?:[.:)].*)?", re.DOTALL)
_BOX_HEDGE_RE = re.compile(r"\(?[A-D]\)?(?:(?:,|/|or|and|&)\(?[A-D]\)?)+")
_OPTION_LINE_RE = re.compile(r"^[ \t*]*+\(?([A-D])[.):]\s", re.M)
_LINE_RE = re.compile(r"^" + _WRAP_OPEN + r"([A-D])" + _WRAP_CLOSE + r"[.]?" + _WRAP_CLOSE + r"$", re.M)


def _unwrap_box(content: str) -> str:
    content = re.sub(r"\\(?:text|textbf|mathrm|mathbf|mathtt)\s*\{([^{}]*)\}", r"\1", content)
    return re.sub(r"[\s$*{}]|\\[(),;!]", "", content)


def _candidates(body: str) -> list[tuple[int, str | None]]:
    """``(position, letter)`` for every explicit answer; ``letter`` is None for a hedge."""
    found: list[tuple[int, str | None]] = []
    for marker in _MARKER_RE.finditer(body):
        match = _AFTER_MARKER_RE.match(body, marker.end(), marker.end() + _WINDOW)
        if match is None:
            continue
        letter, end = match.group(1), match.end(1)
        if letter.islower() and not _LOWER_OK_TAIL.match(body, end):
            continue  # "the answer is a difficult one"
        found.append((match.start(1), None if _HEDGE_TAIL.match(body, end) else letter.upper()))
    for match in _IS_CORRECT_RE.finditer(body):
        found.append((match.start(1), match.group(1)))
    for start, _, content in boxed_spans(body):
        inner = _unwrap_box(content)
        if _BOX_HEDGE_RE.fullmatch(inner):
            found.append((start, None))
        elif letter := _BOX_LETTER_RE.fullmatch(inner):
            found.append((start, (letter.group(1) or letter.group(2)).upper()))
    for match in _LINE_RE.finditer(body):
        found.append((match.start(1), match.group(1)))
    # A reply that opens with one option ("D. It can't be A or B") answers with it; a reply that
    # lists several options ("A) ...\nB) ...") is restating the question, not answering.
    options = _OPTION_LINE_RE.findall(body)
    if len(options) == 1 and (lead := _OPTION_LINE_RE.match(body.lstrip())):
        found.append((0, lead.group(1)))
    return found


def extract_gpqa_letter(completion: str) -> str | None:
    """The last explicit answer letter; stray capital letters elsewhere are not answers."""
    found = _candidates(strip_thinking(completion))
    return max(found, key=lambda item: item[0])[1] if found else None


def grade_gpqa(completion: str, gold: str, **meta: Any) -> Grade:
    expected = gold.strip().strip("()").upper()
    if expected not in {"A", "B", "C", "D"}:
        raise ValueError(f"GPQA gold must be a letter A-D, got {gold!r}")
    letter = extract_gpqa_letter(completion)
    return Grade(letter == expected, letter)
