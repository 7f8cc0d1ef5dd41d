"""Trainer callbacks shared by every stage: throughput/memory logging and the ``metrics.json`` writer.

They are plain ``transformers.TrainerCallback`` objects, so they work with any TRL or
transformers trainer, and everything they log goes through the trainer's own ``log`` so that
``report_to`` backends receive it too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
from transformers import TrainerCallback


def available_memory_gib() -> float:
    return psutil.virtual_memory().available / 2**30


class ThroughputMemoryCallback(TrainerCallback):
    """Adds ``tokens_seen``, ``tok_per_sec`` and ``available_mem_gib`` to each log.

    Tokens are counted by the trainer (``state.num_input_tokens_seen``, enabled with
    ``include_num_input_tokens_seen``) when available, otherwise by ``count_tokens`` hooks the
    caller feeds through :meth:`add_tokens` (RL trainers count generated tokens themselves).
    """

    def __init__(self) -> None:
        self.tokens_seen = 0
        self.min_available_mem_gib = math.inf
        self._start: float | None = None

    def add_tokens(self, n: int) -> None:
        self.tokens_seen += int(n)

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or self._start is None:
            return
        seen = getattr(state, "num_input_tokens_seen", 0) or self.tokens_seen
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        memory = available_memory_gib()
        self.min_available_mem_gib = min(self.min_available_mem_gib, memory)
        logs.update({"tokens_seen": seen, "tok_per_sec": seen / elapsed, "available_mem_gib": memory,
                     "min_available_mem_gib": self.min_available_mem_gib})  # fmt: skip


class MetricsJsonCallback(TrainerCallback):
    """Collects every log record and writes ``<output_dir>/metrics.json`` at the end of training.

    ``summary`` maps output column → function(history) so each stage can produce its seed-table
    columns (e.g. ``avg_reward`` = mean of ``reward_mean`` over steps) from the same records.
    The file is also written on every save, so an interrupted run still leaves its numbers, and a
    resumed run starts its history from the checkpoint's ``log_history``. ``extra`` holds run-level
    fields such as ``stopped_reason`` (set by :class:`trl_ext.training_guards.NonFiniteGuard`).
    """

    def __init__(
        self,
        output_dir: str | Path,
        summary: dict[str, Callable[[list[dict]], object]] | None = None,
        extra: dict | None = None,
    ):
        self.path = Path(output_dir) / "metrics.json"
        self.summary = summary or {}
        self.extra = dict(extra or {})
        self.history: list[dict] = []
        self._start = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.history and state.log_history:
            # Resumed from a checkpoint: summarise the whole run, not only the steps after the resume.
            numbers = [{k: v for k, v in r.items() if _is_number(v)} for r in state.log_history]
            self.history = [{"step": r.get("step"), **n} for r, n in zip(state.log_history, numbers)]

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.history.append(
                {"step": state.global_step, **{k: v for k, v in logs.items() if _is_number(v)}}
            )

    def on_save(self, args, state, control, **kwargs):
        self.write(state, finished=False)

    def on_train_end(self, args, state, control, **kwargs):
        self.write(state, finished=True)

    def write(self, state, finished: bool) -> None:
        summary = {}
        for column, fn in self.summary.items():
            try:
                summary[column] = fn(self.history)
            except (ValueError, KeyError, IndexError, ZeroDivisionError):
                summary[column] = None  # the metric was never logged (e.g. no eval step ran)
        record = {
            "finished": finished,
            "completed_steps": state.global_step,
            "wall_time_s": time.perf_counter() - self._start,
            **self.extra,
            **summary,
            "history": self.history,
        }
        if self.path.parent.exists() or finished:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
            tmp.replace(self.path)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def column_mean(key: str) -> Callable[[Sequence[dict]], float]:
    """Summary helper: mean of ``key`` over the records that have it."""

    def mean(history: Sequence[dict]) -> float:
        values = [r[key] for r in history if key in r]
        return sum(values) / len(values)

    return mean


def column_last(key: str) -> Callable[[Sequence[dict]], float]:
    """Summary helper: the last logged value of ``key``."""

    def last(history: Sequence[dict]) -> float:
        return [r[key] for r in history if key in r][-1]

    return last


def column_min(key: str) -> Callable[[Sequence[dict]], float]:
    def minimum(history: Sequence[dict]) -> float:
        return min(r[key] for r in history if key in r)

    return minimum
