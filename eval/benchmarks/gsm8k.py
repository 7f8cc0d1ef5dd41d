"""GSM8K (``openai/gsm8k``, config ``main``, split ``test``: 1,319 problems).

Schema: ``{question: str, answer: str}`` where ``answer`` ends with ``#### N``. Local files may add
an ``id`` (the embedded 100-problem subset uses ``gsm8k-test-<index>``); otherwise the id is
``gsm8k-test-<row index>``, which matches that subset for the full split.
"""

from __future__ import annotations

from eval.benchmarks import prompts
from eval.benchmarks.base import Benchmark, Problem
from eval.graders import gsm8k_gold
from trl_ext.data.rows import RowSchema

SCHEMA = RowSchema(name="gsm8k", fields={"question": str, "answer": str}, optional={"id": str})


def to_problem(record: dict, index: int) -> Problem:
    gsm8k_gold(record["answer"])  # fail at load time, naming the row, if the gold is not a number
    gold = record["answer"].rsplit("####", 1)[-1].strip()
    return Problem(id=str(record.get("id") or f"gsm8k-test-{index}"), question=record["question"], gold=gold)


GSM8K = Benchmark(
    name="gsm8k",
    display_name="GSM8K",
    hf_path="openai/gsm8k",
    hf_config="main",
    hf_split="test",
    schema=SCHEMA,
    to_problem=to_problem,
    raw_template=prompts.GSM8K_RAW,
    chat_template=prompts.GSM8K_CHAT,
    raw_stop=prompts.RAW_STOP,
    expected_size=1319,
)
