"""MATH-500 (``HuggingFaceH4/MATH-500``, split ``test``: 500 problems).

Schema: ``{problem, solution, answer, subject, level, unique_id}``; the id is ``unique_id``
(e.g. ``test/precalculus/807.json``) and the gold is ``answer`` (LaTeX without ``$``).
"""

from __future__ import annotations

from eval.benchmarks import prompts
from eval.benchmarks.base import Benchmark, Problem
from trl_ext.data.rows import RowSchema

SCHEMA = RowSchema(
    name="MATH-500",
    fields={"problem": str, "answer": str, "unique_id": str},
    optional={"solution": str, "subject": str, "level": int},
)


def to_problem(record: dict, index: int) -> Problem:
    if not record["answer"].strip():
        raise ValueError("field 'answer' is empty")
    return Problem(id=record["unique_id"], question=record["problem"], gold=record["answer"].strip())


MATH500 = Benchmark(
    name="math500",
    display_name="MATH-500",
    hf_path="HuggingFaceH4/MATH-500",
    hf_config=None,
    hf_split="test",
    schema=SCHEMA,
    to_problem=to_problem,
    raw_template=prompts.MATH_RAW,
    chat_template=prompts.MATH_CHAT,
    raw_stop=prompts.RAW_STOP,
    expected_size=500,
)
