"""Protocol presets: each reproduces its source's datasets, prompts, stop and sampling exactly, every
row records preset, prompt version and grader, and ``regrade --grader`` switches graders (rewriting
every aggregate) without generating anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Fault

from eval.__main__ import main
from eval.benchmarks import prompts
from eval.client import SamplingConfig, apply_stop
from eval.graders import available_graders
from eval.presets import PRESETS, get_preset
from eval.results import read_samples
from eval.suite import SuiteConfig, prepare_requests
from trl_ext.client import GenerationResult

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
GSM8K = str(FIXTURES / "gsm8k_test.jsonl")
MATH = str(FIXTURES / "math500_test.jsonl")
GPQA_MC = str(FIXTURES / "gpqa_diamond_mc.jsonl")


def _olympiad_simplerl(path: Path) -> str:
    """302 rows in the zwhe99/simplerl-OlympiadBench schema: the reference run read only the first
    300, then dropped rows with a tolerance, several answers or no answer."""
    rows = []
    for i in range(302):
        row = {"id": 1000 + i, "question": f"Compute {i} + 1.", "final_answer": [f"${i + 1}$"],
               "is_multiple_answer": False, "error": None}  # fmt: skip
        if i % 10 == 1:
            row["error"] = "1e-2"
        elif i % 10 == 2:
            row["is_multiple_answer"] = True
        elif i % 10 == 3:
            row["final_answer"] = []
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _seed_config(tmp_path: Path, **overrides) -> SuiteConfig:
    preset = get_preset("seed")
    values = dict(
        arm="base", out_dir=tmp_path, benchmarks=list(preset.benchmarks), num_samples=2, preset="seed",
        grader=preset.grader, gpqa_shuffle=preset.gpqa_shuffle, progress=False,
        sampling=SamplingConfig(max_tokens=preset.max_tokens, temperature=preset.temperature,
                                top_p=preset.top_p, use_stop=preset.use_stop),
        sources={"gsm8k": GSM8K, "math500": MATH, "gpqa_diamond": GPQA_MC,
                 "olympiadbench": _olympiad_simplerl(tmp_path / "olympiad.jsonl")},
    )  # fmt: skip
    values.update(overrides)
    return SuiteConfig(**values)


def test_seed_preset_is_the_reference_protocol(tmp_path):
    seed = get_preset("seed")
    assert (seed.num_samples, seed.max_tokens, seed.temperature, seed.top_p) == (8, 512, 0.6, 0.95)
    assert seed.use_stop is False and seed.grader == "seed_exact" and seed.mode == "raw"
    hub = {b: seed.benchmark(b).hf_path for b in seed.benchmarks}
    assert hub == {"gsm8k": "openai/gsm8k", "math500": "HuggingFaceH4/MATH-500",
                   "gpqa_diamond": "hendrydong/gpqa_diamond_mc",
                   "olympiadbench": "zwhe99/simplerl-OlympiadBench"}  # fmt: skip

    requests = prepare_requests(_seed_config(tmp_path))
    gsm = requests["gsm8k"][0]
    question = json.loads(Path(GSM8K).read_text().splitlines()[0])["question"]
    assert gsm.prompt.startswith("Problem: Natalia sold clips to 48 of her friends in April")
    assert gsm.prompt.endswith(
        f"Therefore the final answer is \\boxed{{10}}.\n\nProblem: {question}\nSolution:"
    )
    assert gsm.stop is None and gsm.prompt_version == "seed-f5a982a"

    gpqa = requests["gpqa_diamond"]
    assert [r.gold for r in gpqa[::2]] == ["C", "A"] and all(r.permutation is None for r in gpqa)
    assert gpqa[0].prompt == (
        "Answer the multiple-choice science question. Work out the reasoning, then put only the option "
        "letter in \\boxed{}.\n\nQuestion:\n"
        + json.loads(Path(GPQA_MC).read_text().splitlines()[0])["problem"]
        + "\n\nSolution:"
    )  # unshuffled: the options stay where the dataset put them
    assert gpqa[0].problem.id == "gpqa_diamond/test/0"

    olympiad = requests["olympiadbench"]
    ids = sorted({r.problem.id for r in olympiad}, key=lambda i: int(i.rsplit("/", 1)[1]))
    kept = [i for i in range(300) if i % 10 not in (1, 2, 3)]  # rows 300 and 301 are never read
    assert ids == [f"olympiadbench/test/{1000 + i}" for i in kept]
    assert olympiad[0].prompt == prompts.SEED_MATH_RAW.format(question="Compute 0 + 1.")
    assert olympiad[0].gold == "$1$"


def test_seed_run_records_protocol_then_regrade_switches_grader(tmp_path, fault_server, capsys):
    """Rows and summaries say preset/prompt/grader; ``regrade --grader default`` re-scores the same
    completions and rewrites summary.json as well as report.json."""
    url = fault_server([Fault("ok", text="She has 6 left. Therefore the final answer is \\boxed{6.00}.")])
    config = _seed_config(tmp_path, benchmarks=["gsm8k"])
    from eval.suite import run_suite

    summary = run_suite(config, [url])
    body = fault_server.servers[-1].requests[0]
    assert "stop" not in body and (body["temperature"], body["top_p"], body["max_tokens"]) == (0.6, 0.95, 512)
    rows = read_samples(tmp_path / "base" / "gsm8k.jsonl")
    assert {(r["preset"], r["prompt_version"], r["grader"]) for r in rows} == {
        ("seed", "seed-f5a982a", "seed_exact")
    }
    # exact match after the reference normalisation: "6.00" != "6", so nothing is correct
    assert summary["benchmarks"]["gsm8k"]["correct"] == 0
    assert summary["benchmarks"]["gsm8k"]["grader"] == "seed_exact"
    requests_before = len(fault_server.servers[-1].requests)

    assert main(["regrade", "--out", str(tmp_path), "--grader", "default", "--grader-workers", "1"]) == 0
    assert len(fault_server.servers[-1].requests) == requests_before  # nothing regenerated
    rows = read_samples(tmp_path / "base" / "gsm8k.jsonl")
    assert {r["grader"] for r in rows} == {"default"} and sum(r["correct"] for r in rows) == 2  # gold 6
    on_disk = json.loads((tmp_path / "base" / "summary.json").read_text())
    entry = on_disk["benchmarks"]["gsm8k"]
    assert entry["correct"] == 2 and entry["grader"] == "default" and on_disk["config"]["grader"] == "default"
    assert entry["run"]["generated"] == 6  # the run record survives the regrade
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["scores"]["base"]["gsm8k"]["correct"] == 2 and report["runs"]["base"]["grader"] == "default"
    assert json.loads((tmp_path / "base" / "sampling.json").read_text())["grader"] == "default"


def test_resume_refuses_another_grader(tmp_path, fault_server):
    from eval.results import ResumeMismatchError
    from eval.suite import run_suite

    url = fault_server([Fault("ok", text="\\boxed{6}")])
    run_suite(_seed_config(tmp_path, benchmarks=["gsm8k"], num_samples=1), [url])
    with pytest.raises(ResumeMismatchError, match="grader"):
        run_suite(_seed_config(tmp_path, benchmarks=["gsm8k"], num_samples=2, grader="default"), [url])


@pytest.mark.parametrize(
    "completion,gold,strict,strict_ok,flexible,flexible_ok",
    [
        # lm-eval's capture is greedy and its final "." is any character but a newline: "7." is
        # captured before a space, "6" before "\n" (a trailing "." is then ignored by exact match)
        ("5 + 1 = 6. The answer is 6.\n\n", "6", "6", True, "6.", True),
        ("It costs $1,550. The answer is 1,550.", "1550", "1,550", True, "1,550.", True),
        ("So 6 apples. The answer is 7. Wait, 6.", "6", "7.", False, "6.", True),  # strict: first match
        ("no number here", "6", None, False, None, False),
        ("The answer is 6.00 apples", "6", "6.00", False, "6.00", False),  # exact string match
    ],
)
def test_lm_eval_gsm8k_strict_and_flexible(completion, gold, strict, strict_ok, flexible, flexible_ok):
    from eval.graders.lm_eval_gsm8k import grade_flexible, grade_strict

    s, f = grade_strict(completion, gold), grade_flexible(completion, gold)
    assert (s.extracted, s.correct, s.grader) == (strict, strict_ok, "lm_eval_strict")
    assert (f.extracted, f.correct, f.grader) == (flexible, flexible_ok, "lm_eval_flexible")


def test_lm_eval_preset_prompt_and_graders_are_registered(tmp_path):
    assert {"lm_eval_strict", "lm_eval_flexible", "default", "seed_exact"} <= set(available_graders())
    preset = get_preset("lm-eval-gsm8k-cot")
    assert (preset.num_samples, preset.temperature, preset.max_tokens) == (1, 0.0, 256)
    config = SuiteConfig(arm="a", out_dir=tmp_path, benchmarks=["gsm8k"], sources={"gsm8k": GSM8K},
                         preset="lm-eval-gsm8k-cot", num_samples=1)  # fmt: skip
    (request,) = prepare_requests(config)["gsm8k"][:1]
    assert request.prompt.startswith("Q: There are 15 trees in the grove.")
    assert request.prompt.count("\n\nQ: ") == 8 and request.prompt.endswith("\nA:")
    assert request.stop == ["Q:", "</s>", "<|im_end|>"] and request.prompt_version == "lm-eval-gsm8k-cot-v3"


def test_lighteval_prompts(tmp_path):
    sources = {"gpqa_diamond": str(FIXTURES / "gpqa_diamond.csv"), "math500": MATH}
    config = SuiteConfig(arm="a", out_dir=tmp_path, benchmarks=list(sources), preset="lighteval",
                         mode="chat", num_samples=1, sources=sources)  # fmt: skip
    requests = prepare_requests(config)
    gpqa = requests["gpqa_diamond"][0]
    (message,) = gpqa.messages
    assert message["content"].startswith("Answer the following multiple choice question. The last line of")
    options = message["content"].rsplit("\n\n", 1)[1].splitlines()
    assert [o[:3] for o in options] == ["A) ", "B) ", "C) ", "D) "]
    assert gpqa.gold == "ABCD"[gpqa.permutation.index(0)] and gpqa.stop is None
    math = requests["math500"][0].messages[0]["content"]
    assert math.startswith(
        "Solve the following problem. The final line of your response MUST be of the following"
    )
    assert '"ANSWER: $ANSWER"' in math and requests["math500"][0].prompt_version == "lighteval-math500-v2"


def test_every_preset_documents_its_source():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "eval.md").read_text()
    for name, preset in PRESETS.items():
        assert preset.source and f"`{name}`" in doc, name


def test_stop_strings_are_applied_client_side():
    """The CPU continuous-batching server ignores ``stop``; the client cuts at the first stop string."""
    result = GenerationResult(text="x = 6.\n\nProblem: next one\nQuestion:", finish_reason="length",
                              completion_tokens=12)  # fmt: skip
    cut = apply_stop(result, ["\nQuestion:", "\n\nProblem:"])
    assert cut.text == "x = 6." and cut.finish_reason == "stop" and cut.completion_tokens == 12
    assert apply_stop(result, None) is result and apply_stop(result, ["absent"]) is result


def test_regrade_refuses_a_grader_without_a_rule_for_the_benchmark(tmp_path, fault_server):
    from eval.suite import run_suite

    url = fault_server([Fault("ok", text="\\boxed{4}")])
    run_suite(_seed_config(tmp_path, benchmarks=["math500"], num_samples=1), [url])
    with pytest.raises(SystemExit, match="'lm_eval_strict' has no rule for math500"):
        main(["regrade", "--out", str(tmp_path), "--grader", "lm_eval_strict"])
