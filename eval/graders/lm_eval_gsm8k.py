"""lm-evaluation-harness GSM8K scoring, reproduced: its two extraction filters and its exact match.

``lm_eval/tasks/gsm8k/gsm8k-cot.yaml`` (version 3.0) reports two numbers per run:

* ``strict-match``: the **first** ``The answer is (\\-?[0-9\\.\\,]+).`` in the completion;
* ``flexible-extract``: the **last** number-like token ``(-?[$0-9.,]{2,})|(-?[0-9]+)``;

each followed by lm-eval's ``exact_match`` (``lm_eval/api/metrics.py``): remove ``,``, ``$``,
everything up to ``#### `` and a trailing ``.`` from prediction and reference, lower-case, compare
strings. No extraction → ``[invalid]`` (wrong). The completion is what the server returned after the
stop sequences ``Q:``/``</s>``/``<|im_end|>``, as lm-eval sends them.

These are *protocol* graders, registered under ``lm_eval_strict`` and ``lm_eval_flexible`` for GSM8K
only, so ``python -m eval regrade --grader lm_eval_flexible`` switches between the two numbers.
"""

from __future__ import annotations

import re
from typing import Any

from eval.graders.base import Grade

STRICT_COT = re.compile(r"The answer is (\-?[0-9\.\,]+).")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")
FALLBACK = "[invalid]"


def regex_filter(text: str, pattern: re.Pattern, group_select: int) -> str:
    """lm-eval's ``RegexFilter.apply`` for one response."""
    matches = pattern.findall(text)
    if not matches:
        return FALLBACK
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), FALLBACK)
    return match.strip()


def normalise(text: str) -> str:
    for pattern in IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def _grade(completion: str, gold: str, pattern: re.Pattern, group_select: int, name: str) -> Grade:
    extracted = regex_filter(completion, pattern, group_select)
    correct = extracted != FALLBACK and normalise(extracted) == normalise(gold.strip())
    return Grade(correct, None if extracted == FALLBACK else extracted, grader=name)


def grade_strict(completion: str, gold: str, **meta: Any) -> Grade:
    return _grade(completion, gold, STRICT_COT, 0, "lm_eval_strict")


def grade_flexible(completion: str, gold: str, **meta: Any) -> Grade:
    return _grade(completion, gold, FLEXIBLE, -1, "lm_eval_flexible")
