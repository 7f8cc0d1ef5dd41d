"""MATH-500 and OlympiadBench: math-verify symbolic equivalence, gold parsed first.

The answer is the final group of ``\\boxed{}`` (the last box plus boxes joined to it only by
commas, "and", "or" or math delimiters); one box is graded alone, several distinct boxes are
graded as the set of their contents, so ``\\boxed{-2} and \\boxed{1}`` matches the gold ``-2, 1``.
Without a box, math-verify's own extraction reads the whole answer text.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from eval.graders.base import Grade
from eval.graders.text import boxed_spans, final_box_group, split_top_level, strip_thinking

_MV = None


def math_verify():
    """Import math-verify lazily (heavy: SymPy) and build the extraction configs once."""
    global _MV
    if _MV is None:
        from latex2sympy2_extended import NormalizationConfig
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        logging.getLogger("math_verify").setLevel(logging.ERROR)
        pred_config = [
            LatexExtractionConfig(
                boxed_match_priority=0,
                normalization_config=NormalizationConfig(
                    basic_latex=True, units=True, malformed_operators=True, nits=False, boxed="all"
                ),
            ),
            ExprExtractionConfig(),
        ]
        gold_config = [LatexExtractionConfig(), ExprExtractionConfig()]
        _MV = (parse, verify, pred_config, gold_config)
    return _MV


def clean_gold(gold: str) -> str:
    """Drop what is typesetting, not value: an escaped dollar sign (``\\$18.90``) is a unit and
    ``\\!`` is a negative thin space (``32,\\!348``); math-verify cannot parse either in a gold.
    A comma before ``\\!`` separates thousands, so ``11,\\! 111`` is one number, not a list."""
    text = re.sub(r",\s*\\!\s*", ",", gold.strip())
    return text.replace("\\$", "").replace("\\!", "").strip()


def parse_gold(gold: str) -> list:
    """math-verify's parse of a gold answer; [] when it does not parse. Cached: the k samples of
    a problem share its gold."""
    return list(_parse_gold_cached(gold))


@functools.lru_cache(maxsize=4096)
def _parse_gold_cached(gold: str) -> tuple:
    parse, _, _, gold_config = math_verify()
    text = clean_gold(gold)
    boxed = final_answer_text(text) if "\\boxed" in text else None
    if boxed is not None:  # a gold written as a solution: its final box group, as for predictions
        candidates = [f"\\boxed{{{boxed}}}"]
    elif "$" in text or "\\boxed" in text:
        candidates = [text]
    else:
        candidates = [f"${text}$", f"\\boxed{{{text}}}", text]
    for candidate in candidates:
        parsed = parse(candidate, gold_config, parsing_timeout=None)
        if parsed:
            return tuple(parsed)
    return ()


def clear_caches() -> None:
    """Forget cached parses (benchmarks time cold grading with this)."""
    _parse_gold_cached.cache_clear()
    _parse_prediction_cached.cache_clear()


def parse_prediction(text: str) -> list:
    """math-verify's parse of a prediction. Short texts (extracted answers) are cached: samples
    of one problem often give the same answer, and parsing is most of the grading time."""
    if len(text) <= 512:
        return list(_parse_prediction_cached(text))
    parse, _, pred_config, _ = math_verify()
    return parse(text, pred_config, parsing_timeout=None)


@functools.lru_cache(maxsize=8192)
def _parse_prediction_cached(text: str) -> tuple:
    parse, _, pred_config, _ = math_verify()
    return tuple(parse(text, pred_config, parsing_timeout=None))


def _extracted_text(parsed: list) -> str | None:
    strings = [p for p in parsed if isinstance(p, str)]
    if strings:
        return strings[-1]
    return str(parsed[0]) if parsed else None


def _numeric_close(gold: list, pred: list, tolerance: float) -> bool:
    import sympy

    for g in gold:
        for p in pred:
            if isinstance(g, sympy.Basic) and isinstance(p, sympy.Basic):
                try:
                    gv, pv = complex(sympy.N(g)), complex(sympy.N(p))
                except (TypeError, ValueError):
                    continue
                if abs(gv - pv) <= tolerance:
                    return True
    return False


def _numerically_distinct(gold: list, pred: list) -> bool:
    """True when both sides are plain nonzero real numbers whose relative difference exceeds 1e-5.

    math-verify compares numbers after rounding to 6 decimal places, so ``1/2004!`` "equals"
    ``1/2006!`` (Math-Verify #14). A relative check keeps what that rounding is for (``1.414214``
    for ``\\sqrt{2}``) and rejects tiny or huge values that differ; symbolic matches are untouched
    (``x^2+2x+1`` vs ``(x+1)^2`` are not plain numbers)."""
    import sympy

    g = next((x for x in gold if isinstance(x, sympy.Basic)), None)
    p = next((x for x in pred if isinstance(x, sympy.Basic)), None)
    if g is None or p is None or not (g.is_number and p.is_number):
        return False
    try:
        gv, pv = sympy.N(g, 30), sympy.N(p, 30)
        if not (gv.is_real and pv.is_real) or gv == 0 or pv == 0:
            return False
        return bool(abs(gv - pv) > sympy.Float("1e-5", 30) * max(abs(gv), abs(pv)))
    except (TypeError, ValueError, AttributeError):
        return False


def _truncated(parsed: list) -> bool:
    """math-verify sometimes converts only a prefix of the LaTeX it extracted (``1 - \\frac{1}{``
    from ``1 - \\frac{1}{\\mathrm{e}}``), so ``1-1/e`` and ``1+1/e`` both become 1 (Math-Verify
    PR #82). Unbalanced braces in the extracted text give such a parse away."""
    return any(isinstance(x, str) and x.count("{") != x.count("}") for x in parsed)


def _latex_text(parsed: list) -> str:
    return "".join(next((x for x in parsed if isinstance(x, str)), "").split())


def equivalent(gold_parsed: list, pred_parsed: list, tolerance: float | None) -> bool:
    _, verify, _, _ = math_verify()
    if _truncated(gold_parsed) or _truncated(pred_parsed):
        # The values are of a prefix only: trust nothing but the same text.
        return _latex_text(gold_parsed) == _latex_text(pred_parsed)
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):
        # Percent golds are deliberately matched to the bare number (28\% vs 28): keep that.
        percent = any(isinstance(x, str) and "%" in x for x in gold_parsed)
        return percent or not _numerically_distinct(gold_parsed, pred_parsed)
    return tolerance is not None and _numeric_close(gold_parsed, pred_parsed, tolerance)


def tolerance_of(meta: dict) -> float | None:
    value = meta.get("tolerance")
    if value in (None, ""):
        return None
    return float(value)


def final_answer_text(body: str) -> str | None:
    """The final boxed answer: one box's content, or several distinct boxes joined as a list."""
    group = list(dict.fromkeys(final_box_group(body)))  # "\boxed{840}\boxed{840}" is one answer
    return ", ".join(group) if group else None


_FINAL_STATEMENT_RE = re.compile(r"(?i)\bfinal\s+answer\s*(?:is\b|:)\s*")


def restated_answer(body: str) -> str | None:
    """Text of a "final answer is ..." statement that comes after the last box, if any: then the
    box was an intermediate result (``\\boxed{255} ... The final answer is $10,455$``)."""
    spans = boxed_spans(body)
    if not spans:
        return None
    tail = body[spans[-1][1] :]
    statements = list(_FINAL_STATEMENT_RE.finditer(tail))
    return tail[statements[-1].end() :][:300] if statements else None


def grade_math(completion: str, gold: str, **meta: Any) -> Grade:
    gold_parsed = parse_gold(gold)
    if not gold_parsed:
        return Grade(False, None, error=f"gold unparsable: {gold[:80]!r}")
    body = strip_thinking(completion)
    answer = final_answer_text(body)
    pred_parsed = []
    restated = restated_answer(body)
    if restated is not None:
        pred_parsed = parse_prediction(restated)
    if not pred_parsed:
        pred_parsed = parse_prediction(f"\\boxed{{{answer}}}" if answer is not None else body)
    if not pred_parsed:
        return Grade(False, answer)
    return Grade(equivalent(gold_parsed, pred_parsed, tolerance_of(meta)), _extracted_text(pred_parsed))


def _strip_dollars(text: str) -> str:
    return text.strip().strip("$").strip()


def _expand_pm(items: list[str]) -> list[str]:
    """``1 \\pm \\sqrt{2}`` → ``1 + \\sqrt{2}``, ``1 - \\sqrt{2}`` (the official judge does this)."""
    out = []
    for item in items:
        if "\\pm" in item:
            out += [item.replace("\\pm", "+", 1), item.replace("\\pm", "-", 1)]
        else:
            out.append(item)
    return out


def grade_olympiadbench(completion: str, gold: str, **meta: Any) -> Grade:
    """OlympiadBench: as MATH, plus multi-answer golds (``is_multiple_answer``: the lists must have
    the same length and match without regard to order, as the official judge does) and a
    per-problem numeric ``tolerance``."""
    if not meta.get("is_multiple_answer"):
        return grade_math(completion, _strip_dollars(gold), **meta)
    gold_items = _expand_pm(split_top_level(clean_gold(_strip_dollars(gold)).replace("$", "")))
    boxes = final_box_group(strip_thinking(completion))
    if not boxes:
        return Grade(False, None)
    pred_items = _expand_pm([item for box in boxes for item in split_top_level(box)])
    extracted = ", ".join(pred_items)
    if len(pred_items) != len(gold_items):
        return Grade(False, extracted)
    gold_parsed = [parse_gold(item) for item in gold_items]
    if not all(gold_parsed):
        return Grade(False, extracted, error=f"gold unparsable: {gold[:80]!r}")
    pred_parsed = [parse_prediction(f"\\boxed{{{item}}}") for item in pred_items]
    tolerance = tolerance_of(meta)
    # Order-free matching: every gold item needs its own equivalent predicted item.
    unused = list(range(len(pred_parsed)))
    for g in gold_parsed:
        match = next((j for j in unused if pred_parsed[j] and equivalent(g, pred_parsed[j], tolerance)), None)
        if match is None:
            return Grade(False, extracted)
        unused.remove(match)
    return Grade(True, extracted)
