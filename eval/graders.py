"""Graders for the reasoning suite: one entry point, every call under a hard wall-clock limit.

``grade(benchmark, completion, gold, **meta) -> Grade`` is the only public way to score a
completion. It never raises for a bad completion: extraction failures give ``correct=False,
extracted=None``; grader errors and timeouts give ``correct=False`` with ``error`` set, so a
run counts them instead of crashing.

Why a separate process: SymPy (behind math-verify) can run for minutes on inputs such as
``\\boxed{9^{9^{9^{9}}}}``, inside C code that no signal interrupts, and math-verify's own
``signal.alarm`` timeout only works in a main thread. Each call therefore runs in a pebble
worker process that is killed and replaced when it exceeds ``timeout_s``.

Grading rules (docs/eval.md has the full table):

* Thinking is ignored: closed ``<think>…</think>`` segments are removed, text before an orphan
  ``</think>`` (the prompt opened the thought) is dropped, and an unclosed ``<think>`` drops the
  rest, so a completion that never closes its thought has no answer.
* ``gsm8k``: last ``\\boxed{}``, else last ``#### N``, else last "answer is / Answer: N", else the
  last number; exact rational equality after removing commas, ``$`` and trailing periods.
* ``math500`` / ``olympiadbench``: math-verify symbolic equivalence, gold parsed first; the last
  ``\\boxed{}`` is the answer when present. ``olympiadbench`` also supports multi-answer golds
  (matched without regard to order) and a per-problem numeric ``tolerance``.
* ``gpqa_diamond``: the last explicit answer among ``Answer: X``, ``answer is (X)`` and
  ``\\boxed{X}``; ``gold`` is the letter as shown in the (permuted) prompt.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

BENCHMARKS = ("gsm8k", "math500", "gpqa_diamond", "olympiadbench")
DEFAULT_TIMEOUT_S = 10.0
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Grade:
    """The verdict for one completion. ``error`` is set for timeouts and grader failures."""

    correct: bool
    extracted: str | None
    error: str | None = None

    @property
    def timed_out(self) -> bool:
        return self.error is not None and self.error.startswith("timeout")


# --------------------------------------------------------------------------- text helpers


def strip_thinking(text: str) -> str:
    """The answer part of a completion: everything outside thought segments."""
    first_open, first_close = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        text = text[first_close + len(THINK_CLOSE) :]  # the prompt opened the thought
    text = re.sub(r"<think>.*?</think>", " ", text, flags=re.DOTALL)
    open_at = text.find(THINK_OPEN)
    if open_at != -1:
        text = text[:open_at]  # an unclosed thought has no answer after it
    return text.replace(THINK_CLOSE, " ")


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")


def all_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` with balanced braces, in order."""
    found = []
    for match in _BOX_RE.finditer(text):
        i = match.end()
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    found.append(text[i + 1 : j])
                    break
                j += 1
        elif i < len(text) and match.group(0).endswith(" "):  # "\boxed 5"
            token = re.match(r"[^\s$.,;]+", text[i:])
            if token:
                found.append(token.group(0))
    return found


def last_boxed(text: str) -> str | None:
    boxes = all_boxed(text)
    return boxes[-1] if boxes else None


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


# --------------------------------------------------------------------------- GSM8K

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_HASH_RE = re.compile(r"####\s*\$?\s*(" + _NUMBER + r")")
_ANSWER_IS_RE = re.compile(r"(?i:answer\s*(?:is|:|=)|answer\s+is\s*:)\s*\**\s*\\?\$?\s*(" + _NUMBER + r")")
_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}")


def _clean_number_text(text: str) -> str:
    text = _LATEX_FRAC_RE.sub(r"\1/\2", text)
    text = re.sub(r"\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}", " ", text)
    return text.replace("\\$", "").replace("\\,", "").replace("\\!", "").replace("$", "")


def parse_number(text: str) -> Fraction | None:
    """``"1,234.50"`` → 2469/2; ``"3/4"`` → 3/4; anything else → None."""
    text = text.strip().rstrip(".").replace(",", "").replace(" ", "")
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


def _format_number(value: Fraction) -> str:
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
    return Grade(predicted == expected, _format_number(predicted))


# --------------------------------------------------------------------------- MATH / OlympiadBench


def _math_verify():
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


_MV = None


def _parse_gold(gold: str) -> list:
    parse, _, _, gold_config = _math_verify()
    text = gold.strip()
    candidates = [text] if ("$" in text or "\\boxed" in text) else [f"${text}$", f"\\boxed{{{text}}}", text]
    for candidate in candidates:
        parsed = parse(candidate, gold_config, parsing_timeout=None)
        if parsed:
            return parsed
    return []


def _parse_prediction(text: str) -> list:
    parse, _, pred_config, _ = _math_verify()
    return parse(text, pred_config, parsing_timeout=None)


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


def _equivalent(gold_parsed: list, pred_parsed: list, tolerance: float | None) -> bool:
    _, verify, _, _ = _math_verify()
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):
        # Percent golds are deliberately matched to the bare number (28\% vs 28): keep that.
        percent = any(isinstance(x, str) and "%" in x for x in gold_parsed)
        return percent or not _numerically_distinct(gold_parsed, pred_parsed)
    return tolerance is not None and _numeric_close(gold_parsed, pred_parsed, tolerance)


def _tolerance(meta: dict) -> float | None:
    value = meta.get("tolerance")
    if value in (None, ""):
        return None
    return float(value)


def grade_math(completion: str, gold: str, **meta: Any) -> Grade:
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        return Grade(False, None, error=f"gold unparsable: {gold[:80]!r}")
    body = strip_thinking(completion)
    box = last_boxed(body)
    pred_parsed = _parse_prediction(f"\\boxed{{{box}}}" if box is not None else body)
    if not pred_parsed:
        return Grade(False, box)
    return Grade(_equivalent(gold_parsed, pred_parsed, _tolerance(meta)), _extracted_text(pred_parsed))


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
    if not meta.get("is_multiple_answer"):
        return grade_math(completion, _strip_dollars(gold), **meta)
    gold_items = _expand_pm(split_top_level(_strip_dollars(gold).replace("$", "")))
    body = strip_thinking(completion)
    boxes = all_boxed(body)
    if not boxes:
        return Grade(False, None)
    pred_items = _expand_pm([item for box in boxes for item in split_top_level(box)])
    extracted = ", ".join(pred_items)
    if len(pred_items) != len(gold_items):
        return Grade(False, extracted)
    gold_parsed = [_parse_gold(item) for item in gold_items]
    if not all(gold_parsed):
        return Grade(False, extracted, error=f"gold unparsable: {gold[:80]!r}")
    pred_parsed = [_parse_prediction(f"\\boxed{{{item}}}") for item in pred_items]
    tolerance = _tolerance(meta)
    # Order-free matching: every gold item needs its own equivalent predicted item.
    unused = list(range(len(pred_parsed)))
    for g in gold_parsed:
        match = next(
            (j for j in unused if pred_parsed[j] and _equivalent(g, pred_parsed[j], tolerance)), None
        )
        if match is None:
            return Grade(False, extracted)
        unused.remove(match)
    return Grade(True, extracted)


# --------------------------------------------------------------------------- GPQA

_LETTER_PATTERNS = (
    # "Answer: B", "answer is (B)", "final answer: **B**", "The correct answer is B."
    re.compile(r"(?i:answer)\s*(?i:is)?\s*[:：]?\s*(?:\*\*)?\s*\(?\s*([A-D])\s*\)?(?![A-Za-z])"),
    # "\boxed{B}", "\boxed{(B)}", "\boxed{\text{B}}", "\boxed{\textbf{(B)}}"
    re.compile(r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{)?\s*\(?\s*([A-D])\s*\)?\s*\}?\s*\}"),
    # "(B) is correct", "option B is correct"
    re.compile(r"(?i:option|choice)?\s*\(?([A-D])\)?\s+(?i:is\s+(?:the\s+)?correct)"),
)


def extract_gpqa_letter(completion: str) -> str | None:
    """The last explicit answer letter; stray capital letters elsewhere are not answers."""
    body = strip_thinking(completion)
    best: tuple[int, str] | None = None
    for pattern in _LETTER_PATTERNS:
        for match in pattern.finditer(body):
            if best is None or match.start(1) > best[0]:
                best = (match.start(1), match.group(1))
    if best is not None:
        return best[1]
    bare = re.fullmatch(r"\s*\(?\s*([A-D])\s*\)?\s*\.?\s*", body)
    return bare.group(1) if bare else None


def grade_gpqa(completion: str, gold: str, **meta: Any) -> Grade:
    expected = gold.strip().strip("()").upper()
    if expected not in {"A", "B", "C", "D"}:
        raise ValueError(f"GPQA gold must be a letter A-D, got {gold!r}")
    letter = extract_gpqa_letter(completion)
    return Grade(letter == expected, letter)


# --------------------------------------------------------------------------- dispatch

_GRADERS = {
    "gsm8k": grade_gsm8k,
    "math500": grade_math,
    "gpqa_diamond": grade_gpqa,
    "olympiadbench": grade_olympiadbench,
}


def grade_in_process(benchmark: str, completion: str, gold: str, **meta: Any) -> Grade:
    """Grade without a time limit, in this process. Only for the worker and for benchmarks of
    the grader itself: production code calls :func:`grade`."""
    try:
        return _GRADERS[benchmark](completion, gold, **meta)
    except Exception as err:  # noqa: BLE001 - a grader bug must be counted, not crash the run
        return Grade(False, None, error=f"{type(err).__name__}: {str(err)[:200]}")


def _check_benchmark(benchmark: str) -> None:
    if benchmark not in _GRADERS:
        raise ValueError(f"unknown benchmark {benchmark!r}; graders exist for {', '.join(BENCHMARKS)}")


def _warm_worker() -> None:
    _math_verify()


def _worker_context():
    """fork, with SymPy/math-verify imported first so workers (and their replacements after a
    kill) start warm. spawn and forkserver both re-run the caller's ``__main__`` in each worker,
    which breaks any script without an ``if __name__ == "__main__"`` guard."""
    _math_verify()
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


class GraderPool:
    """A pool of killable grader processes.

    Each call gets ``timeout_s`` of wall-clock time in a worker; a worker that runs past it is
    killed and replaced, and the call returns ``Grade(error="timeout ...")``. Thread-safe, so
    the async suite can submit from its event loop and wait on the returned futures.
    """

    def __init__(self, workers: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S):
        import pebble

        self.timeout_s = timeout_s
        self._pool = pebble.ProcessPool(
            max_workers=workers, initializer=_warm_worker, context=_worker_context()
        )
        self.timeouts = 0
        self.errors = 0
        self._lock = threading.Lock()

    def submit(self, benchmark: str, completion: str, gold: str, **meta: Any) -> Future:
        """A future that always resolves to a :class:`Grade` (never raises)."""
        _check_benchmark(benchmark)
        inner = self._pool.schedule(
            grade_in_process, args=(benchmark, completion, gold), kwargs=meta, timeout=self.timeout_s
        )
        outer: Future = Future()
        inner.add_done_callback(lambda f: outer.set_result(self._resolve(f)))
        return outer

    def _resolve(self, future: Future) -> Grade:
        try:
            grade = future.result()
        except FutureTimeoutError:
            grade = Grade(False, None, error=f"timeout after {self.timeout_s:g}s (worker killed)")
        except Exception as err:  # noqa: BLE001 - a crashed worker (ProcessExpired) is counted
            grade = Grade(False, None, error=f"{type(err).__name__}: {str(err)[:200]}")
        if grade.error is not None:
            with self._lock:
                if grade.timed_out:
                    self.timeouts += 1
                else:
                    self.errors += 1
        return grade

    def grade(self, benchmark: str, completion: str, gold: str, **meta: Any) -> Grade:
        return self.submit(benchmark, completion, gold, **meta).result()

    def grade_many(self, items: Iterable[tuple[str, str, str, dict]]) -> list[Grade]:
        """Grade ``(benchmark, completion, gold, meta)`` tuples in parallel, results in order."""
        futures = [self.submit(b, c, g, **m) for b, c, g, m in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._pool.stop()
        self._pool.join(timeout=10)

    def __enter__(self) -> GraderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEFAULT_POOL: GraderPool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_pool(timeout_s: float = DEFAULT_TIMEOUT_S) -> GraderPool:
    global _DEFAULT_POOL
    with _DEFAULT_LOCK:
        if _DEFAULT_POOL is None or _DEFAULT_POOL.timeout_s != timeout_s:
            if _DEFAULT_POOL is not None:
                _DEFAULT_POOL.close()
            _DEFAULT_POOL = GraderPool(workers=1, timeout_s=timeout_s)
            atexit.register(_DEFAULT_POOL.close)
        return _DEFAULT_POOL


def grade(
    benchmark: str, completion: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, **meta: Any
) -> Grade:
    """Score one completion for ``benchmark`` under a hard ``timeout_s`` wall-clock limit.

    ``meta``: ``is_multiple_answer`` and ``tolerance`` (OlympiadBench); anything else is ignored.
    """
    return default_pool(timeout_s).grade(benchmark, completion, gold, **meta)


def grade_batch(
    benchmark: str, completions: Sequence[str], golds: Sequence[str], metas: Sequence[dict] | None = None
) -> list[Grade]:
    metas = metas or [{} for _ in completions]
    return default_pool().grade_many(zip([benchmark] * len(completions), completions, golds, metas))
