"""The reference run's own dataset choices for GPQA-Diamond and OlympiadBench (``--preset seed``).

* GPQA-Diamond from ``hendrydong/gpqa_diamond_mc`` (split ``test``, 198 rows): ``problem`` already
  contains the four options as ``(A) …``, in the dataset's order (never shuffled); ``solution`` is
  the gold letter, as ``\\boxed{D}``. Ids are ``gpqa_diamond/test/<row>`` as the reference run wrote.
* OlympiadBench from ``zwhe99/simplerl-OlympiadBench`` (split ``test``): only the **first 300
  rows** are read, then rows with an ``error`` tolerance, ``is_multiple_answer`` or an empty
  ``final_answer`` are dropped; the gold is ``final_answer[0]``.

GSM8K (``openai/gsm8k`` main/test) and MATH-500 are the same datasets as the default suite.
"""

from __future__ import annotations

import re

from eval.benchmarks import prompts
from eval.benchmarks.base import Benchmark, Problem
from eval.benchmarks.olympiadbench import OLYMPIADBENCH
from trl_ext.data.rows import RowSchema

GPQA_MC_SCHEMA = RowSchema(
    name="GPQA-Diamond (hendrydong/gpqa_diamond_mc)",
    fields={"problem": str, "solution": str},
    optional={"domain": str | None, "id": str},
)

_BOXED = re.compile(r"\\boxed\s*\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_LETTER = re.compile(r"(?:answer is|final answer is|therefore|thus|^|\s)([ABCD])(?:[\).,\s]|$)")


def gold_letter(solution: str) -> str:
    """The reference run's reading of the gold: the letter in the last ``\\boxed{}``, else the last
    "answer is X"-style letter."""
    boxes = _BOXED.findall(solution)
    if boxes:
        match = re.search(r"\b([ABCD])\b", boxes[-1].upper())
        if match:
            return match.group(1)
    letters = _LETTER.findall(solution.upper())
    if not letters:
        raise ValueError(f"no gold letter A-D in solution {solution[:80]!r}")
    return letters[-1]


def gpqa_mc_problem(record: dict, index: int) -> Problem:
    return Problem(
        id=str(record.get("id") or f"gpqa_diamond/test/{index}"),
        question=record["problem"],
        gold=gold_letter(record["solution"]),
    )


GPQA_DIAMOND_MC = Benchmark(
    name="gpqa_diamond",
    display_name="GPQA-Diamond",
    hf_path="hendrydong/gpqa_diamond_mc",
    hf_config=None,
    hf_split="test",
    schema=GPQA_MC_SCHEMA,
    to_problem=gpqa_mc_problem,
    raw_template=prompts.SEED_GPQA_RAW,
    chat_template=prompts.SEED_GPQA_RAW,
    expected_size=198,
    prompt_version=prompts.SEED_VERSION,
)

OLYMPIAD_SIMPLERL_SCHEMA = RowSchema(
    name="OlympiadBench (zwhe99/simplerl-OlympiadBench)",
    fields={"question": str, "final_answer": list[str]},
    optional={**OLYMPIADBENCH.schema.optional, "id": int | str | None},
)


def seed_keep(record: dict) -> bool:
    return not (record.get("error") or record.get("is_multiple_answer") or not record.get("final_answer"))


def olympiad_simplerl_problem(record: dict, index: int) -> Problem:
    answer = record["final_answer"][0].strip()
    if not answer:
        raise ValueError("field 'final_answer' starts with an empty answer")
    rid = record.get("id")
    return Problem(
        id=f"olympiadbench/test/{rid if rid is not None else index}", question=record["question"], gold=answer
    )


OLYMPIADBENCH_SIMPLERL = Benchmark(
    name="olympiadbench",
    display_name="OlympiadBench",
    hf_path="zwhe99/simplerl-OlympiadBench",
    hf_config=None,
    hf_split="test",
    schema=OLYMPIAD_SIMPLERL_SCHEMA,
    to_problem=olympiad_simplerl_problem,
    raw_template=prompts.SEED_MATH_RAW,
    chat_template=prompts.SEED_MATH_RAW,
    keep=seed_keep,
    prompt_version=prompts.SEED_VERSION,
    max_source_rows=300,
)
