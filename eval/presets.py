"""Protocol presets: one name fixes datasets, prompts, stop sequences, sampling and the grader, so a
number in a report says how it was obtained (docs/eval.md has the table with every source).

* ``demo``: the embedded 100-problem GSM8K subset, 4 samples of 64 tokens (a CPU pipeline check).
* ``full``: this project's protocol (docs/method.md §6): the four benchmarks with this project's
  prompts (``project-v1``), stop at the next "Problem:", 8 samples × 512 tokens, symbolic grading.
* ``seed``: the reference run exactly (docs/reference_run.md §6): its datasets (GPQA from
  ``hendrydong/gpqa_diamond_mc`` unshuffled, OlympiadBench from the first 300 rows of
  ``zwhe99/simplerl-OlympiadBench`` filtered), its raw prompts, **no** stop sequences, 8 samples ×
  512 tokens at T 0.6 / top_p 0.95, graded with ``seed_exact``. ``regrade --grader default`` then
  shows how much its exact match under-counted.
* ``lm-eval-gsm8k-cot``: lm-evaluation-harness ``gsm8k_cot`` (8-shot CoT, greedy, 256 tokens,
  stop at "Q:"), graded ``lm_eval_strict`` (``regrade --grader lm_eval_flexible`` for the other).
* ``lighteval``: lighteval's MATH-500 and GPQA-Diamond instruct prompts (one user turn, no stop),
  graded symbolically (``default``).

Any flag given on the command line overrides the preset's value; the row files record the preset,
the prompt version of each benchmark and the grader.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from eval.benchmarks import BENCHMARKS, get_benchmark, prompts
from eval.benchmarks.base import Benchmark
from eval.benchmarks.seed_datasets import GPQA_DIAMOND_MC, OLYMPIADBENCH_SIMPLERL


@dataclass(frozen=True)
class Preset:
    """Everything a protocol fixes. ``benchmarks`` maps a benchmark name to the fully specified
    :class:`Benchmark` (dataset, prompt, stop) this preset uses for it."""

    name: str
    description: str
    source: str
    benchmarks: dict[str, Benchmark]
    num_samples: int
    max_tokens: int
    temperature: float = 0.6
    top_p: float = 0.95
    use_stop: bool = True
    mode: str = "raw"
    grader: str = "default"
    gpqa_shuffle: str = "per_problem"
    limit: int | None = None
    max_concurrency: int = 32
    sources: dict[str, str] = field(default_factory=dict)

    def benchmark(self, name: str) -> Benchmark:
        """This preset's version of ``name``; a benchmark the preset does not list keeps the
        project's default dataset and prompt."""
        key = get_benchmark(name).name
        return self.benchmarks.get(key, BENCHMARKS[key])


def _with_prompt(benchmark: Benchmark, version: str, raw: str, chat: str, stop=(), **changes) -> Benchmark:
    changes.update(raw_template=raw, chat_template=chat, raw_stop=tuple(stop), prompt_version=version)
    return dataclasses.replace(benchmark, **changes)


_SEED_GSM8K = _with_prompt(
    BENCHMARKS["gsm8k"], prompts.SEED_VERSION, prompts.SEED_GSM8K_RAW, prompts.SEED_GSM8K_RAW
)
_SEED_MATH = _with_prompt(
    BENCHMARKS["math500"], prompts.SEED_VERSION, prompts.SEED_MATH_RAW, prompts.SEED_MATH_RAW
)

PRESETS: dict[str, Preset] = {
    "demo": Preset(
        name="demo",
        description="CPU pipeline check: 16 embedded GSM8K problems x 4 samples of 64 tokens",
        source="this project",
        benchmarks={"gsm8k": BENCHMARKS["gsm8k"]},
        num_samples=4,
        max_tokens=64,
        limit=16,
        max_concurrency=16,
        sources={"gsm8k": "embedded"},
    ),
    "full": Preset(
        name="full",
        description="this project's protocol: 4 benchmarks, project-v1 prompts, 8 x 512, symbolic graders",
        source="docs/method.md §6",
        benchmarks=dict(BENCHMARKS),
        num_samples=8,
        max_tokens=512,
    ),
    "seed": Preset(
        name="seed",
        description="the reference run's protocol: its datasets, raw prompts, no stop, 8 x 512, seed_exact",
        source="docs/reference_run.md §6 (reference repository scripts/eval_reasoning_sglang.py and "
        "scripts/prepare_reasoning_benchmarks.py at commit f5a982a)",
        benchmarks={
            "gsm8k": _SEED_GSM8K,
            "math500": _SEED_MATH,
            "gpqa_diamond": GPQA_DIAMOND_MC,
            "olympiadbench": OLYMPIADBENCH_SIMPLERL,
        },
        num_samples=8,
        max_tokens=512,
        use_stop=False,
        grader="seed_exact",
        gpqa_shuffle="none",
    ),
    "lm-eval-gsm8k-cot": Preset(
        name="lm-eval-gsm8k-cot",
        description="lm-evaluation-harness gsm8k_cot: 8-shot CoT, greedy, 256 tokens, strict-match",
        source="EleutherAI/lm-evaluation-harness lm_eval/tasks/gsm8k/gsm8k-cot.yaml (version 3.0)",
        benchmarks={
            "gsm8k": _with_prompt(
                BENCHMARKS["gsm8k"],
                prompts.LM_EVAL_GSM8K_COT_VERSION,
                prompts.LM_EVAL_GSM8K_COT_RAW,
                prompts.LM_EVAL_GSM8K_COT_RAW,
                prompts.LM_EVAL_GSM8K_COT_STOP,
            )
        },
        num_samples=1,
        max_tokens=256,
        temperature=0.0,
        top_p=1.0,
        grader="lm_eval_strict",
    ),
    "lighteval": Preset(
        name="lighteval",
        description="lighteval math_500 and gpqa:diamond instruct prompts, one user turn, symbolic graders",
        source="huggingface/lighteval src/lighteval/tasks/tasks/math_500.py (v2) and gpqa.py "
        "gpqa_instruct_prompt (gpqa:diamond, v1)",
        benchmarks={
            "math500": _with_prompt(
                BENCHMARKS["math500"],
                prompts.LIGHTEVAL_MATH500_VERSION,
                prompts.LIGHTEVAL_MATH500,
                prompts.LIGHTEVAL_MATH500,
            ),
            "gpqa_diamond": _with_prompt(
                BENCHMARKS["gpqa_diamond"],
                prompts.LIGHTEVAL_GPQA_VERSION,
                prompts.LIGHTEVAL_GPQA,
                prompts.LIGHTEVAL_GPQA,
                option_format=prompts.LIGHTEVAL_GPQA_OPTION,
            ),
        },
        num_samples=8,
        max_tokens=512,
        mode="chat",
        use_stop=False,
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
