"""The four reasoning benchmarks, as declarative :class:`Benchmark` objects.

``get_benchmark(name)`` accepts the grader keys (``gsm8k``, ``math500``, ``gpqa_diamond``,
``olympiadbench``) and the display names. ``resolve_source(name, source)`` maps the special
source ``embedded`` to the 100 real GSM8K test problems of the embedded default.
"""

from __future__ import annotations

from eval.benchmarks.base import Benchmark, Problem, SampleRequest, option_permutation, prompt_hash
from eval.benchmarks.gpqa import GPQA_DIAMOND
from eval.benchmarks.gsm8k import GSM8K
from eval.benchmarks.math500 import MATH500
from eval.benchmarks.olympiadbench import OLYMPIADBENCH

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (GSM8K, MATH500, GPQA_DIAMOND, OLYMPIADBENCH)}
_ALIASES = {b.display_name.lower(): b.name for b in BENCHMARKS.values()} | {
    "gpqa": "gpqa_diamond",
    "math": "math500",
}


def get_benchmark(name: str) -> Benchmark:
    key = name.strip().lower()
    key = _ALIASES.get(key, key).replace("-", "_")
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


def resolve_source(name: str, source: str | None) -> str | None:
    """``embedded`` → the embedded GSM8K subset's path (fetched on first use)."""
    if source == "embedded":
        if get_benchmark(name).name != "gsm8k":
            raise ValueError(f"the embedded default only ships GSM8K problems, not {name!r}")
        from trl_ext.assets import embedded_default

        return str(embedded_default().gsm8k_path)
    return source


__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "Problem",
    "SampleRequest",
    "get_benchmark",
    "option_permutation",
    "prompt_hash",
    "resolve_source",
]
