"""GSM8K: one number. Last ``\\boxed{}``, else last ``#### N``, else last "answer is / Answer: N",
else the last number; exact rational equality after removing thousands separators, ``$`` and
trailing periods."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from eval.graders.base import Grade
from eval.graders.text import last_boxed, strip_thinking

# Thousands separators: "," or a (thin / no-break) space, only in groups of exactly three digits,
# so "1 000" is 1000 while "3 20" stays two numbers.
_GROUPED = r"\d{1,3}(?:(?:,|\\,|[ \u00a0\u202f\u2009])\d{3})+(?![\d,])"
_NUMBER = rf"-?(?:{_GROUPED}|\d+)(?:\.\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_HASH_RE = re.compile(r"####\s*\$?\s*(" + _NUMBER + r")")
_ANSWER_IS_RE = re.compile(r"(?i:answer\s*(?:is|:|=)|answer\s+is\s*:)\s*\**\s*\\?\$?\s*(" + _NUMBER + r")")
_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}")


def _clean_number_text(text: str) -> str:
    text = _LATEX_FRAC_RE.sub(r"\1/\2", text)
    text = re.sub(r"\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}", " ", text)
    return text.replace("\\$", "").replace("\\!", "").replace("$", "")


def parse_number(text: str) -> Fraction | None:
    """``"1,234.50"`` → 2469/2; ``"1 000"`` → 1000; ``"3/4"`` → 3/4; anything else → None."""
    text = re.sub(r"[,\s\u00a0\u202f\u2009]|\\,", "", text.strip().rstrip("."))
    if not text:
        return None
    try:
        if re.fullmatch(r"-?\d+/\d+", text):
            return Fraction(text)
        if re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", text):
            return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def format_number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    as_float = float(value)
    return repr(as_float) if Fraction(repr(as_float)) == value else f"{value.numerator}/{value.denominator}"


def extract_gsm8k(completion: str) -> Fraction | None:
    body = strip_thinking(completion)
    box = last_boxed(body)
    if box is not None:
        cleaned = _clean_number_text(box)
        fraction = re.findall(r"-?\d+/\d+", cleaned.replace(",", ""))
        if fraction:
            return parse_number(fraction[-1])
        numbers = _NUMBER_RE.findall(cleaned)
        return parse_number(numbers[-1]) if numbers else None
    for pattern in (_HASH_RE, _ANSWER_IS_RE):
        matches = pattern.findall(body)
        if matches:
            return parse_number(matches[-1])
    numbers = _NUMBER_RE.findall(_clean_number_text(body))
    return parse_number(numbers[-1]) if numbers else None


def gsm8k_gold(gold: str) -> Fraction:
    """The gold number; accepts the raw dataset answer (``... #### 72``) or just ``72``."""
    text = gold.rsplit("####", 1)[-1] if "####" in gold else gold
    value = parse_number(_clean_number_text(text))
    if value is None:
        raise ValueError(f"GSM8K gold answer {gold[-80:]!r} is not a number")
    return value


def grade_gsm8k(completion: str, gold: str, **meta: Any) -> Grade:
    expected = gsm8k_gold(gold)
    predicted = extract_gsm8k(completion)
    if predicted is None:
        return Grade(False, None)
    return Grade(predicted == expected, format_number(predicted))
