"""OlympiadBench, English text-only competition math (``Hothan/OlympiadBench``, config
``OE_TO_maths_en_COMP``, split ``train``: 675 open-ended problems).

Schema: ``id`` (int), ``question``, ``final_answer`` (list of str, ``$``-wrapped LaTeX),
``is_multiple_answer``, ``error`` (numeric tolerance as a string, or null), ``unit``,
``answer_type``, ``language``, ``modality``. Rows that are not English or not text-only are
skipped (a local file mixing subsets is filtered to the right one). Gold: all ``final_answer``
items joined by ``, ``; ``is_multiple_answer`` makes the grader match them without order.
"""

from __future__ import annotations

from eval.benchmarks import prompts
from eval.benchmarks.base import Benchmark, Problem
from trl_ext.data.rows import RowSchema

SCHEMA = RowSchema(
    name="OlympiadBench",
    fields={"id": int, "question": str, "final_answer": list[str]},
    optional={
        "is_multiple_answer": bool,
        "error": str | None,
        "unit": str | None,
        "answer_type": str | None,
        "language": str | None,
        "modality": str | None,
        "context": str | None,
        "subfield": str | None,
        "subject": str | None,
        "question_type": str | None,
        "solution": list[str] | None,
    },
)


def keep(record: dict) -> bool:
    language, modality = record.get("language"), record.get("modality")
    return (language in (None, "English")) and (modality in (None, "Text-only"))


def to_problem(record: dict, index: int) -> Problem:
    answers = [a.strip() for a in record["final_answer"] if a and a.strip()]
    if not answers:
        raise ValueError("field 'final_answer' is empty")
    meta: dict = {"is_multiple_answer": bool(record.get("is_multiple_answer"))}
    if record.get("error"):
        meta["tolerance"] = float(str(record["error"]).split(",")[0])
    question = record["question"]
    if record.get("context"):
        question = f"{record['context'].strip()}\n\n{question}"
    return Problem(
        id=f"olympiadbench-{record['id']}", question=question, gold=", ".join(answers), grade_meta=meta
    )


OLYMPIADBENCH = Benchmark(
    name="olympiadbench",
    display_name="OlympiadBench",
    hf_path="Hothan/OlympiadBench",
    hf_config="OE_TO_maths_en_COMP",
    hf_split="train",
    schema=SCHEMA,
    to_problem=to_problem,
    raw_template=prompts.MATH_RAW,
    chat_template=prompts.MATH_CHAT,
    raw_stop=prompts.RAW_STOP,
    keep=keep,
    expected_size=675,
)
