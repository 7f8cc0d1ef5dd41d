"""Graders for the reasoning suite: one entry point, every call under a hard wall-clock limit.

``grade(benchmark, completion, gold, grader="default", **meta) -> Grade`` is the public way to
score a completion. It never raises for a bad completion: extraction failures give
``correct=False, extracted=None``; grader errors and timeouts give ``correct=False`` with
``error`` set, so a run counts them instead of crashing. Every :class:`Grade` names its grader.

Graders (``GRADERS`` / :func:`available_graders`; docs/graders.md has the rules and how far each
agrees with public graders):

* ``default``: symbolic. GSM8K exact rational equality (eval.graders.gsm8k), MATH-500 and
  OlympiadBench math-verify equivalence (eval.graders.math), GPQA the last explicit answer
  letter (eval.graders.gpqa). Thinking (``<think>…</think>``) is ignored.
* ``seed_exact``: the reference run's exact string match after its normalisation
  (eval.graders.seed_exact), to reproduce its tables before regrading them.
* ``lm_eval_strict`` / ``lm_eval_flexible`` (GSM8K only): lm-evaluation-harness's strict-match and
  flexible-extract filters with its exact match (eval.graders.lm_eval_gsm8k).

Why a separate process: SymPy (behind math-verify) can run for minutes on inputs such as
``\\boxed{9^{9^{9^{9}}}}``, inside C code that no signal interrupts, and math-verify's own
``signal.alarm`` timeout only works in a main thread. Each call therefore runs in a pebble
worker process that is killed and replaced when it exceeds ``timeout_s``.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from functools import partial
from typing import Any

from eval.graders.base import Grade
from eval.graders.gpqa import extract_gpqa_letter, grade_gpqa
from eval.graders.gsm8k import extract_gsm8k, grade_gsm8k, gsm8k_gold, parse_number
from eval.graders.lm_eval_gsm8k import grade_flexible as grade_lm_eval_flexible
from eval.graders.lm_eval_gsm8k import grade_strict as grade_lm_eval_strict
from eval.graders.math import grade_math, grade_olympiadbench, math_verify
from eval.graders.seed_exact import grade_seed_exact
from eval.graders.text import all_boxed, final_box_group, last_boxed, split_top_level, strip_thinking

__all__ = [
    "BENCHMARKS",
    "DEFAULT_GRADER",
    "DEFAULT_TIMEOUT_S",
    "GRADERS",
    "Grade",
    "GraderPool",
    "all_boxed",
    "available_graders",
    "default_pool",
    "extract_gpqa_letter",
    "extract_gsm8k",
    "final_box_group",
    "grade",
    "grade_batch",
    "grade_in_process",
    "gsm8k_gold",
    "last_boxed",
    "parse_number",
    "split_top_level",
    "strip_thinking",
]

BENCHMARKS = ("gsm8k", "math500", "gpqa_diamond", "olympiadbench")
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_GRADER = "default"

GraderFn = Callable[..., Grade]

GRADERS: dict[str, dict[str, GraderFn]] = {
    "default": {
        "gsm8k": grade_gsm8k,
        "math500": grade_math,
        "gpqa_diamond": grade_gpqa,
        "olympiadbench": grade_olympiadbench,
    },
    "seed_exact": {benchmark: partial(grade_seed_exact, benchmark) for benchmark in BENCHMARKS},
    # lm-evaluation-harness's two GSM8K numbers (protocol graders for --preset lm-eval-gsm8k-cot).
    "lm_eval_strict": {"gsm8k": grade_lm_eval_strict},
    "lm_eval_flexible": {"gsm8k": grade_lm_eval_flexible},
}


def available_graders() -> tuple[str, ...]:
    return tuple(GRADERS)


def _check(benchmark: str, grader: str) -> None:
    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}; choose one of {', '.join(GRADERS)}")
    if benchmark not in GRADERS[grader]:
        raise ValueError(f"unknown benchmark {benchmark!r}; graders exist for {', '.join(BENCHMARKS)}")


def grade_in_process(
    benchmark: str, completion: str, gold: str, *, grader: str = DEFAULT_GRADER, **meta: Any
) -> Grade:
    """Grade without a time limit, in this process. Only for the worker and for benchmarks of
    the grader itself: production code calls :func:`grade` or a :class:`GraderPool`."""
    _check(benchmark, grader)
    try:
        return GRADERS[grader][benchmark](completion, gold, **meta).by(grader)
    except Exception as err:  # noqa: BLE001 - a grader bug must be counted, not crash the run
        return Grade(False, None, error=f"{type(err).__name__}: {str(err)[:200]}", grader=grader)


def _warm_worker() -> None:
    math_verify()


def _worker_context():
    """fork, with SymPy/math-verify imported first so workers (and their replacements after a
    kill) start warm. spawn and forkserver both re-run the caller's ``__main__`` in each worker,
    which breaks any script without an ``if __name__ == "__main__"`` guard."""
    math_verify()
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

    def submit(
        self, benchmark: str, completion: str, gold: str, *, grader: str = DEFAULT_GRADER, **meta: Any
    ) -> Future:
        """A future that always resolves to a :class:`Grade` (never raises)."""
        _check(benchmark, grader)
        kwargs = {**meta, "grader": grader}
        inner = self._pool.schedule(
            grade_in_process, args=(benchmark, completion, gold), kwargs=kwargs, timeout=self.timeout_s
        )
        outer: Future = Future()
        inner.add_done_callback(lambda f: outer.set_result(self._resolve(f, grader)))
        return outer

    def _resolve(self, future: Future, grader: str) -> Grade:
        try:
            grade = future.result()
        except FutureTimeoutError:
            grade = Grade(
                False, None, error=f"timeout after {self.timeout_s:g}s (worker killed)", grader=grader
            )
        except Exception as err:  # noqa: BLE001 - a crashed worker (ProcessExpired) is counted
            grade = Grade(False, None, error=f"{type(err).__name__}: {str(err)[:200]}", grader=grader)
        if grade.error is not None:
            with self._lock:
                if grade.timed_out:
                    self.timeouts += 1
                else:
                    self.errors += 1
        return grade

    def grade(
        self, benchmark: str, completion: str, gold: str, *, grader: str = DEFAULT_GRADER, **meta: Any
    ) -> Grade:
        return self.submit(benchmark, completion, gold, grader=grader, **meta).result()

    def grade_many(
        self, items: Iterable[tuple[str, str, str, dict]], grader: str = DEFAULT_GRADER
    ) -> list[Grade]:
        """Grade ``(benchmark, completion, gold, meta)`` tuples in parallel, results in order."""
        futures = [self.submit(b, c, g, grader=grader, **m) for b, c, g, m in items]
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
    benchmark: str,
    completion: str,
    gold: str,
    *,
    grader: str = DEFAULT_GRADER,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **meta: Any,
) -> Grade:
    """Score one completion for ``benchmark`` with ``grader`` under a hard ``timeout_s`` limit.

    ``meta``: ``is_multiple_answer`` and ``tolerance`` (OlympiadBench); anything else is ignored.
    """
    return default_pool(timeout_s).grade(benchmark, completion, gold, grader=grader, **meta)


def grade_batch(
    benchmark: str,
    completions: Sequence[str],
    golds: Sequence[str],
    metas: Sequence[dict] | None = None,
    *,
    grader: str = DEFAULT_GRADER,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[Grade]:
    """Grade many completions of one benchmark in the shared pool; results in input order."""
    if len(golds) != len(completions) or (metas is not None and len(metas) != len(completions)):
        raise ValueError("completions, golds and metas must have the same length")
    metas = metas or [{} for _ in completions]
    return default_pool(timeout_s).grade_many(
        zip([benchmark] * len(completions), completions, golds, metas), grader
    )
