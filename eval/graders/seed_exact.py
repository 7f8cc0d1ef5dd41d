"""``seed_exact``: the reference run's exact-match grading (docs/reference_run.md, "Reasoning eval"),
reproduced so its tables can be recomputed protocol-for-protocol and then regraded with the
symbolic graders.

What it did, and so what this does (on the raw completion; the reference prompts had no
``<think>``, so nothing is stripped):

* the prediction is the content of the last ``\\boxed{}``;
* GSM8K: the last number (inside that box when there is one); gold is the ``####`` number;
* GPQA: the boxed letter, else the last letter A-D after "answer is", "therefore" or "thus";
* MATH-500 and OlympiadBench: the boxed content, else the last number;
* correct means ``normalize_text(prediction) == normalize_text(gold)``: strip ``\\boxed``,
  ``\\mathrm``, ``\\text``, ``\\left``, ``\\right``, braces, ``\\,``, ``\\!``, ``$``, commas and
  whitespace, then lowercase. No symbolic equivalence: ``0.5`` is not ``\\frac{1}{2}`` and ``18.00``
  is not ``18``.

The reference code itself is not public; this follows its documented behaviour, and
tests/test_graders.py pins each rule with an example.
"""

from __future__ import annotations

import re
from typing import Any

from eval.graders.base import Grade
from eval.graders.text import last_boxed

_STRIP_TOKENS = ("\\boxed", "\\mathrm", "\\text", "\\left", "\\right", "\\,", "\\!", "{", "}", "$", ",")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_GPQA_RE = re.compile(r"(?i:answer\s+is|therefore|thus)[\s:,]*\(?([A-D])\b")


def normalize_text(text: str) -> str:
    for token in _STRIP_TOKENS:
        text = text.replace(token, "")
    return re.sub(r"\s+", "", text).lower()


def _last_number(text: str) -> str | None:
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1] if numbers else None


def extract(benchmark: str, completion: str) -> str | None:
    box = last_boxed(completion)
    if benchmark == "gsm8k":
        return _last_number(box if box is not None else completion)
    if benchmark == "gpqa_diamond":
        if box is not None and normalize_text(box) in {"a", "b", "c", "d"}:
            return box
        letters = _GPQA_RE.findall(completion)
        return letters[-1] if letters else None
    return box if box is not None else _last_number(completion)


def seed_gold(benchmark: str, gold: str) -> str:
    if benchmark == "gsm8k" and "####" in gold:
        return gold.rsplit("####", 1)[-1].strip()
    return gold


def grade_seed_exact(benchmark: str, completion: str, gold: str, **meta: Any) -> Grade:
    predicted = extract(benchmark, completion)
    if predicted is None:
        return Grade(False, None, grader="seed_exact")
    correct = normalize_text(predicted) == normalize_text(seed_gold(benchmark, gold))
    return Grade(correct, predicted, grader="seed_exact")
