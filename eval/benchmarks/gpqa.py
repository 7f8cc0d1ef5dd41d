"""GPQA-Diamond (``Idavidrein/gpqa``, config ``gpqa_diamond``, split ``train``: 198 questions).

Schema (the original CSV columns): ``Question``, ``Correct Answer``, ``Incorrect Answer 1..3``,
``Record ID``. The dataset is gated; users accept its terms on the Hub or pass a local copy
(``gpqa_diamond.csv`` works as is). The four options are shown in a seeded per-question
permutation (see :func:`eval.benchmarks.base.option_permutation`), stored in each result row.
"""

from __future__ import annotations

from eval.benchmarks import prompts
from eval.benchmarks.base import Benchmark, Problem
from trl_ext.data.rows import RowSchema

SCHEMA = RowSchema(
    name="GPQA",
    fields={
        "Question": str,
        "Correct Answer": str,
        "Incorrect Answer 1": str,
        "Incorrect Answer 2": str,
        "Incorrect Answer 3": str,
    },
    optional={"Record ID": str, "High-level domain": str, "Subdomain": str},
)


def to_problem(record: dict, index: int) -> Problem:
    choices = tuple(
        str(record[k]).strip()
        for k in ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
    )
    if len(set(choices)) != 4:
        raise ValueError("the four options are not distinct")
    problem_id = str(record.get("Record ID") or f"gpqa-diamond-{index}")
    return Problem(id=problem_id, question=record["Question"].strip(), gold="A", choices=choices)


GPQA_DIAMOND = Benchmark(
    name="gpqa_diamond",
    display_name="GPQA-Diamond",
    hf_path="Idavidrein/gpqa",
    hf_config="gpqa_diamond",
    hf_split="train",
    schema=SCHEMA,
    to_problem=to_problem,
    raw_template=prompts.GPQA_RAW,
    chat_template=prompts.GPQA_CHAT,
    raw_stop=prompts.RAW_STOP,
    expected_size=198,
)
