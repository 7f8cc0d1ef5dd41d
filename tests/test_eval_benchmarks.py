"""Benchmarks load from local files in each dataset's exact schema; prompts and GPQA shuffles."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from eval.benchmarks import BENCHMARKS, get_benchmark, option_permutation, resolve_source
from eval.graders import grade_in_process
from trl_ext.data.rows import RowFileError

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
FIXTURE_FILES = {
    "gsm8k": FIXTURES / "gsm8k_test.jsonl",
    "math500": FIXTURES / "math500_test.jsonl",
    "gpqa_diamond": FIXTURES / "gpqa_diamond.csv",
    "olympiadbench": FIXTURES / "olympiadbench_test.jsonl",
}


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_fixture_loads_and_golds_grade_as_correct(name):
    benchmark = get_benchmark(name)
    problems = benchmark.load(FIXTURE_FILES[name])
    assert len(problems) == 3 and len({p.id for p in problems}) == 3
    for problem in problems:
        request = benchmark.request(problem, 0, mode="raw", seed=1)
        assert problem.question.strip()[:20] in request.prompt
        answer = (
            f"Answer: {request.gold}" if name == "gpqa_diamond" else f"\\boxed{{{request.gold.strip('$')}}}"
        )
        verdict = grade_in_process(name, answer, request.gold, **dict(problem.grade_meta))
        assert verdict.correct, (name, problem.id, verdict)


def test_gsm8k_ids_match_the_embedded_subset_scheme(embedded):
    problems = get_benchmark("gsm8k").load(FIXTURE_FILES["gsm8k"])
    assert [p.id for p in problems] == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]
    assert problems[2].gold == "1,550"
    subset = get_benchmark("gsm8k").load(resolve_source("gsm8k", "embedded"))
    assert len(subset) == 100 and all(p.id.startswith("gsm8k-test-") for p in subset)


def test_olympiadbench_filters_and_meta():
    problems = {p.id: p for p in get_benchmark("olympiadbench").load(FIXTURE_FILES["olympiadbench"])}
    assert "olympiadbench-9004" not in problems  # Chinese row skipped
    assert problems["olympiadbench-9001"].grade_meta == {"is_multiple_answer": True}
    assert problems["olympiadbench-9002"].grade_meta["tolerance"] == pytest.approx(0.01)


def test_math500_ids_and_golds():
    problems = get_benchmark("math500").load(FIXTURE_FILES["math500"])
    assert problems[0].id == "test/prealgebra/fixture-1.json" and problems[0].gold == r"\frac{5}{6}"


def test_gpqa_permutation_is_seeded_stored_and_balanced():
    benchmark = get_benchmark("gpqa_diamond")
    problem = benchmark.load(FIXTURE_FILES["gpqa_diamond"])[0]
    first = benchmark.request(problem, 0, seed=7)
    again = benchmark.request(problem, 0, seed=7)
    assert first.permutation == again.permutation and first.prompt == again.prompt
    # The correct option (original index 0) is shown under the gold letter.
    shown = first.prompt.split(f"({first.gold}) ", 1)[1].split("\n", 1)[0]
    assert shown == problem.choices[0] == "Green"
    # per_problem: all k samples share one order; per_sample: orders vary across samples.
    per_problem = {tuple(benchmark.request(problem, i, seed=7).permutation) for i in range(8)}
    per_sample = {
        tuple(benchmark.request(problem, i, seed=7, shuffle="per_sample").permutation) for i in range(8)
    }
    assert len(per_problem) == 1 and len(per_sample) > 1
    assert benchmark.request(problem, 0, shuffle="none").gold == "A"
    # Over many ids the gold letter is spread over A-D (no "all gold = D" bug).
    golds = Counter("ABCD"[option_permutation(f"q{i}", seed=0).index(0)] for i in range(400))
    assert set(golds) == set("ABCD") and min(golds.values()) > 60


def test_prompt_modes_and_hash():
    benchmark = get_benchmark("math500")
    problem = benchmark.load(FIXTURE_FILES["math500"])[0]
    raw = benchmark.request(problem, 0, mode="raw")
    chat = benchmark.request(problem, 0, mode="chat")
    assert raw.prompt.endswith("Solution:\n") and raw.messages is None and raw.stop
    assert (
        chat.prompt is None
        and chat.messages[0]["role"] == "user"
        and "\\boxed{}" in chat.messages[0]["content"]
    )
    assert raw.prompt_hash != chat.prompt_hash and len(raw.prompt_hash) == 16
    with pytest.raises(ValueError, match="prompt mode"):
        benchmark.request(problem, 0, mode="fewshot")


def test_gsm8k_raw_prompt_is_two_shot():
    benchmark = get_benchmark("gsm8k")
    prompt = benchmark.request(benchmark.load(FIXTURE_FILES["gsm8k"])[0], 0).prompt
    assert prompt.count("Problem:") == 3 and "\\boxed{18}" in prompt and prompt.endswith("Solution:\n")


def test_bad_rows_name_file_line_and_field(tmp_path):
    bad = tmp_path / "math.jsonl"
    good = json.loads(FIXTURE_FILES["math500"].read_text().splitlines()[0])
    broken = dict(good, unique_id="x2")
    del broken["answer"]
    bad.write_text(json.dumps(good) + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(RowFileError) as err:
        get_benchmark("math500").load(bad)
    assert err.value.line == 2 and err.value.field == "answer" and str(bad) in str(err.value)

    csv = tmp_path / "gpqa.csv"
    csv.write_text("Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2\nq,a,b,c\n")
    with pytest.raises(RowFileError, match="Incorrect Answer 3"):
        get_benchmark("gpqa").load(csv)

    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text(json.dumps({"question": "q", "answer": "no final number"}) + "\n")
    with pytest.raises(RowFileError, match=r"gsm\.jsonl:1"):
        get_benchmark("gsm8k").load(gsm)

    dup = tmp_path / "dup.jsonl"
    dup.write_text((json.dumps(good) + "\n") * 2)
    with pytest.raises(RowFileError, match="duplicate problem id"):
        get_benchmark("math500").load(dup)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown benchmark"):
        get_benchmark("aime24")
    with pytest.raises(ValueError, match="only ships GSM8K"):
        resolve_source("math500", "embedded")
    assert (
        get_benchmark("GPQA-Diamond").name == "gpqa_diamond" and get_benchmark("MATH-500").name == "math500"
    )


def test_dataset_directory_and_parquet_use_the_hub_loading_path(tmp_path):
    """A local dataset folder goes through ``datasets.load_dataset`` exactly like a Hub id."""
    import datasets

    folder = tmp_path / "gsm8k"
    folder.mkdir()
    (folder / "test.jsonl").write_text(FIXTURE_FILES["gsm8k"].read_text())
    problems = get_benchmark("gsm8k").load(folder)  # config "main" falls back for a plain folder
    assert [p.gold for p in problems] == ["19", "6", "1,550"]

    rows = [json.loads(line) for line in FIXTURE_FILES["olympiadbench"].read_text().splitlines()]
    parquet = tmp_path / "olympiad.parquet"
    datasets.Dataset.from_list(rows).to_parquet(parquet)
    problems = get_benchmark("olympiadbench").load(parquet)
    assert [p.id for p in problems] == ["olympiadbench-9001", "olympiadbench-9002", "olympiadbench-9003"]
