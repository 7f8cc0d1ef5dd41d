"""Grader rules per benchmark: equivalent forms, near misses, multiple boxes, thinking, hangs, and
the ``seed_exact`` grader. Agreement with public graders' own cases is in test_graders_outside.py."""

from __future__ import annotations

import time

import psutil
import pytest

from eval.graders import (
    GRADERS,
    Grade,
    GraderPool,
    all_boxed,
    available_graders,
    extract_gpqa_letter,
    final_box_group,
    grade,
    grade_batch,
    grade_in_process,
    split_top_level,
    strip_thinking,
)
from eval.graders.seed_exact import normalize_text

# --------------------------------------------------------------------------- thinking


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain answer 5", "plain answer 5"),
        ("<think>draft 3</think> final 5", " final 5"),
        ("prompt opened it, draft 3</think>final 5", "final 5"),
        ("<think>a</think> x <think>b</think> y", " x   y"),
        ("<think>never closed, answer 5", ""),
        ("answer 5 <think>second thoughts: 6", "answer 5 "),
    ],
)
def test_strip_thinking(text, expected):
    assert strip_thinking(text).split() == expected.split()


def test_all_boxed_balanced_and_nested():
    assert all_boxed(r"\boxed{\frac{1}{2}} and \boxed{3} \fbox{x}") == [r"\frac{1}{2}", "3", "x"]
    assert all_boxed(r"\boxed 7.") == ["7"]
    assert all_boxed(r"\boxed{unclosed") == []


def test_final_box_group_joins_only_boxes_stated_together():
    assert final_box_group(r"\boxed{-2} and \boxed{1}") == ["-2", "1"]
    assert final_box_group(r"$\boxed{1}$, $\boxed{2}$ or $\boxed{3}$") == ["1", "2", "3"]
    assert final_box_group(r"x = \boxed{1}, y = \boxed{2}") == ["1", "2"]
    assert final_box_group(r"\boxed{3}. Wait, that is wrong: \boxed{4}") == ["4"]
    assert final_box_group("\\boxed{3}\n\n\\boxed{4}") == ["4"]  # a new paragraph is a new answer
    assert final_box_group("no box") == []


def test_split_top_level_respects_brackets():
    assert split_top_level("(0,1], 3, {a,b}") == ["(0,1]", "3", "{a,b}"]


# --------------------------------------------------------------------------- GSM8K

GSM8K_CASES = [
    # (completion, gold, correct, extracted)
    (r"So the total is \boxed{1,234}.", "1234", True, "1234"),
    ("She pays $18.00 in total.", "18", True, "18"),
    ("The answer is $1,550.", "#### 1,550", True, "1550"),
    ("Work... #### 72", "Natalia sold 48/2 = 24 clips.\n#### 72", True, "72"),
    ("The answer is: 42. Later I mention 43 apples.", "42", True, "42"),
    (r"\boxed{\$18}", "18", True, "18"),
    (r"\boxed{18 \text{ dollars}}", "18", True, "18"),
    (r"\boxed{\frac{3}{4}}", "0.75", True, "0.75"),
    ("It is -5 degrees.", "-5", True, "-5"),
    ("The result is 18.5", "18", False, "18.5"),  # near miss
    ("The answer is 17", "18", False, "17"),
    (r"\boxed{17} no wait \boxed{18}", "18", True, "18"),  # the last box counts
    (r"\boxed{18} no wait \boxed{17}", "18", False, "17"),
    ("<think>maybe it is 18</think> The answer is 17.", "18", False, "17"),  # drafts are ignored
    ("<think>it is 17</think> The answer is 18.", "18", True, "18"),
    ("<think>the answer is 18 but I keep thinking", "18", False, None),  # unclosed: no answer
    ("no digits here", "18", False, None),
    ("", "18", False, None),
    # Thousands separators: a space (issue 11: "1 000" was read as 1), thin spaces, commas.
    ("The answer is 1 000.", "1000", True, "1000"),
    ("So she has 1 000 apples", "1000", True, "1000"),
    ("#### 12 500", "12500", True, "12500"),
    (r"\boxed{1\,000}", "1000", True, "1000"),
    ("After 3 20 are left", "20", True, "20"),  # not a group of three digits: two numbers
]


@pytest.mark.parametrize(("completion", "gold", "correct", "extracted"), GSM8K_CASES)
def test_gsm8k(completion, gold, correct, extracted):
    assert grade_in_process("gsm8k", completion, gold) == Grade(correct, extracted)


def test_gsm8k_bad_gold_is_counted_not_raised():
    result = grade_in_process("gsm8k", "5", "not a number")
    assert not result.correct and result.error and "not a number" in result.error


# --------------------------------------------------------------------------- MATH-500

MATH_CASES = [
    (r"Thus \boxed{\frac{1}{2}}.", r"\frac{1}{2}", True),
    (r"\boxed{0.5}", r"\frac{1}{2}", True),
    (r"\boxed{\frac12}", r"\frac{1}{2}", True),
    (r"\boxed{\dfrac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}", True),
    (r"\boxed{\frac{\sqrt3}{2}}", r"\frac{\sqrt{3}}{2}", True),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", True),
    (r"\boxed{x=5}", "5", True),
    (r"\boxed{[0,1)}", "[0,1)", True),
    (r"\boxed{(0,1)}", "[0,1)", False),  # open vs half-open interval
    (r"\boxed{\text{(C)}}", r"\text{(C)}", True),
    (r"\boxed{10^\circ}", "10", True),
    (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", True),
    (r"\boxed{\frac{5}{6}}", r"\frac{5}{7}", False),  # near miss
    (r"\boxed{4\sqrt{2}}", "4", False),
    (r"\boxed{3} then I double check and get \boxed{4}", "4", True),
    (r"\boxed{4} then I double check and get \boxed{3}", "4", False),
    ("The final answer is $x = 7$.", "7", True),  # no box: math-verify's own extraction
    (r"<think>\boxed{3}</think> so \boxed{4}", "4", True),
    (r"<think>\boxed{4}</think> so \boxed{3}", "4", False),
    ("I could not solve it.", "4", False),
    # Known Math-Verify pitfalls (issue and PR numbers of huggingface/Math-Verify):
    (r"\boxed{\frac{1}{2004!}}", r"\frac{1}{2006!}", False),  # tiny values are not all equal (#14)
    (r"\boxed{\frac{1}{2006!}}", r"\frac{1}{2006!}", True),
    (r"\boxed{1.414214}", r"\sqrt{2}", True),  # 6-decimal approximations still count
    (r"\boxed{1-\frac{1}{e}}", r"1+\frac{1}{e}", False),  # PR #82
    (r"\boxed{840}\boxed{840}", "840", True),  # repeated box, not 840840 (#44)
    (r"\boxed{\text{13}}", "13", True),  # (#37)
    (r"\[\boxed{42}\]", "42", True),  # display math around the box
    (r"\boxed{28}", r"28\%", True),  # a percent gold matches its number (documented)
    (r"\boxed{x^2+2x+1}", "(x+1)^2", True),
    # Golds with an escaped dollar were "gold unparsable" (3 MATH-500 problems, issue 11).
    (r"\boxed{\$32,\!348}", r"\$32,\!348", True),
    (r"\boxed{32348}", r"\$32,\!348", True),
    (r"\boxed{18.90}", r"\$18.90", True),
    (r"\boxed{\$36}", r"\$36", True),
    (r"\boxed{35}", r"\$36", False),
    (r"\boxed{11,\! 111,\! 111,\! 100}", r"11,\! 111,\! 111,\! 100", True),  # one number, not a list
    # Several boxes stating one answer are graded as their set (Math-Verify credits them).
    (r"\boxed{-2} and \boxed{1}", "-2, 1", True),
    (r"The roots are $\boxed{1}$, $\boxed{-2}$.", "-2, 1", True),
    (r"\boxed{-2} and \boxed{1}", "1", False),  # a hedge between two answers is not the answer
    (r"\boxed{-2} and \boxed{3}", "-2, 1", False),
    (r"\boxed{840}\boxed{840}", "840", True),
    # An early box followed by a different final answer grades the final one.
    (r"\boxed{3}. Wait, that is wrong: \boxed{4}", "4", True),
    (r"\boxed{3}. Wait, that is wrong: \boxed{4}", "3", False),
    (r"So \boxed{255} is the interest. Final Answer: The final answer is $10,455$.", "10455", True),
    (r"So \boxed{255} is the interest. Final Answer: The final answer is $10,455$.", "255", False),
]


@pytest.mark.parametrize(("completion", "gold", "correct"), MATH_CASES)
def test_math500(completion, gold, correct):
    result = grade_in_process("math500", completion, gold)
    assert result.error is None
    assert result.correct is correct


def test_math500_extracted_is_reported():
    assert grade_in_process("math500", r"\boxed{\frac{5}{6}}", r"\frac{5}{6}").extracted == r"\frac{5}{6}"


# --------------------------------------------------------------------------- OlympiadBench


@pytest.mark.parametrize(
    ("completion", "gold", "meta", "correct"),
    [
        (r"\boxed{2, 3}", "$2, 3$", {"is_multiple_answer": True}, True),
        (r"\boxed{3, 2}", "$2, 3$", {"is_multiple_answer": True}, True),  # order-free
        (r"\boxed{3} and \boxed{2}", "$2, 3$", {"is_multiple_answer": True}, True),  # one box per answer
        (r"\boxed{2}", "$2, 3$", {"is_multiple_answer": True}, False),  # missing answer
        (r"\boxed{2, 3, 4}", "$2, 3$", {"is_multiple_answer": True}, False),  # extra answer
        (r"\boxed{2, 2}", "$2, 3$", {"is_multiple_answer": True}, False),  # one item cannot match twice
        (r"\boxed{(1,2), (3,4)}", "$(3,4), (1,2)$", {"is_multiple_answer": True}, True),  # tuples stay whole
        (r"\boxed{3.14}", "$\\pi$", {"tolerance": 0.01}, True),  # per-problem tolerance
        (r"\boxed{3.2}", "$\\pi$", {"tolerance": 0.01}, False),
        (r"\boxed{3.14}", "$\\pi$", {}, False),  # no tolerance: exact symbolic equivalence
        (r"\boxed{\frac{\pi}{2}}", r"$\frac{\pi}{2}$", {}, True),
        (r"\boxed{[-1, 2]}", "$[-1,2]$", {"is_multiple_answer": False}, True),
        (r"\boxed{\pm 2}", "$2, -2$", {"is_multiple_answer": True}, True),  # \pm expands to two answers
        (r"\boxed{1 \pm \sqrt{2}}", r"$1-\sqrt{2}, 1+\sqrt{2}$", {"is_multiple_answer": True}, True),
    ],
)
def test_olympiadbench(completion, gold, meta, correct):
    result = grade_in_process("olympiadbench", completion, gold, **meta)
    assert result.error is None
    assert result.correct is correct


# --------------------------------------------------------------------------- GPQA

GPQA_CASES = [
    ("Answer: B", "B"),
    ("Step by step... the answer is (C).", "C"),
    ("The correct answer is D.", "D"),
    (r"So the answer is \boxed{A}", "A"),
    (r"\boxed{(B)}", "B"),
    (r"\boxed{\text{C}}", "C"),
    ("Answer: **D**", "D"),
    ("The answer is (D). On reflection, Answer: A", "A"),  # the last explicit answer wins
    (r"Answer: A ... final \boxed{C}", "C"),
    ("(B)", "B"),
    ("Option C is correct.", "C"),
    ("A and B are both plausible, I am unsure.", None),  # stray letters are not answers
    ("The answer is a difficult one.", None),
    ("<think>Answer: A</think> Answer: B", "B"),
    ("<think>Answer: A", None),
    # Formats chat models use (issue 11: each gave None). The first is what our GPQA prompt asks for.
    ("Reasoning.\n\nAnswer: $B$", "B"),
    (r"Answer: \(B\)", "B"),
    ("**B**", "B"),
    ("Reasoning.\n\n**B**", "B"),
    (r"\boxed{\mathrm{B}}", "B"),
    ("The correct option is B.", "B"),
    ("answer: b", "B"),
    ('Answer: "B"', "B"),
    ("The answer is for sure B", "B"),
    ("Final answer: **C**", "C"),
    ("Answer: B, since A is wrong", "B"),
    # Hedges are not credited to their first letter, and do not fall back to an earlier answer.
    ("Answer: A or B", None),
    ("Answer: (A) or (B)", None),
    (r"\boxed{A \text{ or } B}", None),
    ("Answer: C\n\nOn reflection, Answer: A or B", None),
    # Restated options are not answers.
    ("A) 5\nB) 6\nC) 7\nD) 8", None),
]


@pytest.mark.parametrize(("completion", "letter"), GPQA_CASES)
def test_gpqa_letter(completion, letter):
    assert extract_gpqa_letter(completion) == letter


def test_gpqa_grade_uses_gold_letter():
    assert grade_in_process("gpqa_diamond", "Answer: C", "C").correct
    assert not grade_in_process("gpqa_diamond", "Answer: C", "A").correct
    assert grade_in_process("gpqa_diamond", "Answer: C", "(c)").correct
    assert grade_in_process("gpqa_diamond", "Answer: C", "E").error  # bad gold is counted


# --------------------------------------------------------------------------- pathological inputs

PATHOLOGICAL = [
    "x" * 200_000,  # long garbage
    "\\boxed{" * 500,  # unbalanced braces
    r"\boxed{\frac{\frac{\frac{\frac{1}{2}}{3}}{4}}{5}" * 50,
    "1" * 5000,  # a 5000-digit number
    "\x00\ufffd\ufffd" * 1000,  # byte fragments like the random tiny model emits
]


@pytest.mark.parametrize("completion", PATHOLOGICAL)
@pytest.mark.parametrize("benchmark", ["gsm8k", "math500", "gpqa_diamond", "olympiadbench"])
def test_pathological_inputs_return_a_grade(benchmark, completion):
    gold = "B" if benchmark == "gpqa_diamond" else "4"
    result = grade(benchmark, completion, gold, timeout_s=20)
    assert isinstance(result, Grade) and not result.correct


ADVERSARIAL = [
    "Answer" + ": " * 3000 + "x",  # nested repeats after a marker backtracked for minutes
    "answer" + " " * 20000 + "z",
    "answer is " + "$ " * 5000 + "zz",
    "The answer is " * 5000,
    "A) x\n" * 5000,
    "\\boxed{1}" + " and " * 5000 + "\\boxed{2}",
    "1 000 " * 5000,
]


@pytest.fixture(scope="module")
def short_limit_pool():
    with GraderPool(workers=1, timeout_s=3.0) as pool:
        yield pool


@pytest.mark.parametrize("completion", ADVERSARIAL)
@pytest.mark.parametrize("benchmark", ["gsm8k", "gpqa_diamond"])
def test_regex_extraction_is_linear(short_limit_pool, benchmark, completion):
    """The regex graders must not backtrack: each call finishes far inside a 3 s limit."""
    result = short_limit_pool.grade(benchmark, completion, "B" if benchmark == "gpqa_diamond" else "4")
    assert not result.timed_out and result.error is None


def _spinning_worker(process: psutil.Process) -> bool:
    """A grader worker (not a test server) still burning CPU."""
    try:
        return "serve" not in " ".join(process.cmdline()) and process.cpu_percent(interval=0.2) > 50
    except psutil.Error:  # exited meanwhile
        return False


def test_sympy_hang_is_killed_and_counted():
    hangs = [r"\boxed{9^{9^{9^{9}}}}", r"\boxed{(10^{10})!}"]
    with GraderPool(workers=1, timeout_s=1.0) as pool:
        start = time.monotonic()
        results = pool.grade_many([("math500", text, "1", {}) for text in hangs])
        elapsed = time.monotonic() - start
        assert all(r.timed_out and not r.correct for r in results)
        assert pool.timeouts == 2 and pool.errors == 0
        assert elapsed < 12  # two 1 s limits plus worker restarts, not minutes
        # The pool still works after killing its worker, and no hung worker is left behind.
        assert pool.grade("math500", r"\boxed{2}", "2").correct
        assert not [p for p in psutil.Process().children(recursive=True) if _spinning_worker(p)]


def test_unknown_benchmark_is_a_caller_error():
    with pytest.raises(ValueError, match="unknown benchmark"):
        grade("aime", "1", "1")


def test_public_entry_point_grades_through_the_worker():
    assert grade("gsm8k", r"\boxed{19}", "19") == Grade(True, "19")
    assert grade("math500", r"\boxed{\frac{10}{12}}", r"\frac{5}{6}").correct
    assert grade("olympiadbench", r"\boxed{3, 2}", "$2, 3$", is_multiple_answer=True).correct
    assert grade("gpqa_diamond", "Answer: D", "D").correct


# --------------------------------------------------------------------------- seed_exact


def test_seed_exact_normalisation_is_the_documented_one():
    assert normalize_text(r"\boxed{\text{ Evelyn }}") == "evelyn"
    assert normalize_text(r"$\left( 3, \frac{\pi}{2} \right)$") == r"(3\frac\pi2)"
    assert normalize_text(r"10,\!080") == "10080"


SEED_CASES = [
    # (benchmark, completion, gold, seed_exact correct, default correct): where exact match under-counts
    ("gsm8k", "She pays 18 dollars. #### 18", "#### 18", True, True),
    ("gsm8k", "The total is 18.00", "18", False, True),  # exact match: 18.00 is not 18
    ("gsm8k", r"\boxed{1,234}", "1234", True, True),
    ("gsm8k", r"The answer is 7 and then 8 more", "7", False, True),  # seed takes the last number
    ("math500", r"\boxed{\frac{1}{2}}", r"\frac{1}{2}", True, True),
    ("math500", r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", False, True),
    ("math500", r"\boxed{0.5}", r"\frac{1}{2}", False, True),
    ("math500", r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", True, True),
    ("math500", "so the answer is 42", "42", True, True),  # no box: the last number
    ("gpqa_diamond", r"\boxed{C}", "C", True, True),
    ("gpqa_diamond", "Thus (B) fits best.", "B", True, False),  # "thus B" counts for the seed only
    ("gpqa_diamond", "Answer: $B$", "B", False, True),
    ("olympiadbench", r"\boxed{2}", "$2$", True, True),
    ("olympiadbench", r"\boxed{\sqrt{4}}", "$2$", False, True),
]


@pytest.mark.parametrize(("benchmark", "completion", "gold", "seed", "default"), SEED_CASES)
def test_seed_exact_against_default(benchmark, completion, gold, seed, default):
    exact = grade_in_process(benchmark, completion, gold, grader="seed_exact")
    symbolic = grade_in_process(benchmark, completion, gold)
    assert (exact.correct, exact.grader) == (seed, "seed_exact")
    assert (symbolic.correct, symbolic.grader) == (default, "default")


def test_seed_exact_does_not_strip_thinking():
    # The reference prompts had no <think>; its grader read the whole completion.
    text = "<think>so \\boxed{4}</think> The answer: 5"
    assert grade_in_process("math500", text, "4", grader="seed_exact").correct
    assert not grade_in_process("math500", text, "4").correct


# --------------------------------------------------------------------------- registry


def test_grader_registry():
    assert available_graders() == ("default", "seed_exact", "lm_eval_strict", "lm_eval_flexible")
    for name in ("default", "seed_exact"):
        assert set(GRADERS[name]) == {"gsm8k", "math500", "gpqa_diamond", "olympiadbench"}
    for name in ("lm_eval_strict", "lm_eval_flexible"):  # protocol graders: GSM8K only
        assert set(GRADERS[name]) == {"gsm8k"}
        with pytest.raises(ValueError, match="math500"):
            grade_in_process("math500", "1", "1", grader=name)
    with pytest.raises(ValueError, match="unknown grader"):
        grade_in_process("gsm8k", "1", "1", grader="lenient")
    with pytest.raises(ValueError, match="unknown grader"):
        grade("gsm8k", "1", "1", grader="lenient")


def test_every_grade_names_its_grader_through_the_worker():
    assert grade("math500", r"\boxed{0.5}", r"\frac{1}{2}") == Grade(True, "0.5", grader="default")
    assert grade("math500", r"\boxed{0.5}", r"\frac{1}{2}", grader="seed_exact") == Grade(
        False, "0.5", grader="seed_exact"
    )
    grades = grade_batch("gsm8k", ["18.00", "#### 18"], ["18", "18"], grader="seed_exact")
    assert [(g.correct, g.grader) for g in grades] == [(False, "seed_exact"), (True, "seed_exact")]
    with pytest.raises(ValueError, match="same length"):
        grade_batch("gsm8k", ["1"], ["1", "2"])


def test_a_timeout_names_its_grader():
    with GraderPool(workers=1, timeout_s=1.0) as pool:
        result = pool.grade("math500", r"\boxed{9^{9^{9^{9}}}}", "1", grader="default")
        assert result.timed_out and result.grader == "default"
