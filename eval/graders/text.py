"""Text helpers shared by the graders: thought stripping, ``\\boxed{}`` contents, top-level splits."""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def strip_thinking(text: str) -> str:
    """The answer part of a completion: everything outside thought segments.

    Closed ``<think>…</think>`` segments are removed, text before an orphan ``</think>`` (the
    prompt opened the thought) is dropped, and an unclosed ``<think>`` drops the rest, so a
    completion that never closes its thought has no answer."""
    first_open, first_close = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        text = text[first_close + len(THINK_CLOSE) :]  # the prompt opened the thought
    text = re.sub(r"<think>.*?</think>", " ", text, flags=re.DOTALL)
    open_at = text.find(THINK_OPEN)
    if open_at != -1:
        text = text[:open_at]  # an unclosed thought has no answer after it
    return text.replace(THINK_CLOSE, " ")


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of every ``\\boxed{...}`` / ``\\fbox{...}`` with balanced braces."""
    found = []
    for match in _BOX_RE.finditer(text):
        i = match.end()
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    found.append((match.start(), j + 1, text[i + 1 : j]))
                    break
                j += 1
        elif i < len(text) and match.group(0).endswith(" "):  # "\boxed 5"
            token = re.match(r"[^\s$.,;]+", text[i:])
            if token:
                found.append((match.start(), i + token.end(), token.group(0)))
    return found


def all_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` with balanced braces, in order."""
    return [content for _, _, content in boxed_spans(text)]


def last_boxed(text: str) -> str | None:
    boxes = all_boxed(text)
    return boxes[-1] if boxes else None


# Text allowed between two boxes of one answer: "\boxed{-2} and \boxed{1}", "$\boxed{1}$, $\boxed{2}$",
# "x = \boxed{1}, y = \boxed{2}".
_JOINER_RE = re.compile(
    r"(?:[\s$,;.]|\\[\[\]()]|\\q?quad|\band\b|\bor\b|\\text\{\s*(?:and|or)\s*\}"
    r"|\b[A-Za-z](?:_\{?\w+\}?)?\s*=)*"  # a variable label: "\boxed{1} and y_2 = \boxed{3}"
)


def final_box_group(text: str) -> list[str]:
    """The last box plus the boxes right before it that are joined to it only by commas, "and",
    "or", math delimiters or a variable label (not a blank line): the boxes that together state
    one final answer."""
    spans = boxed_spans(text)
    if not spans:
        return []
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        gap = text[span[1] : group[0][0]]
        if len(gap) > 200 or "\n\n" in gap or not _JOINER_RE.fullmatch(gap):
            break
        group.insert(0, span)
    return [content for _, _, content in group]


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside (), [], {} — so ``(0,1], 3`` gives two items."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]
