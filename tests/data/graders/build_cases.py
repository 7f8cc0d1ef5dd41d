"""Rebuild the outside grader cases (``<source>.jsonl``) from the public repositories they come from.

Each case is ``{benchmark, completion, gold, expected, source, note}`` (plus ``meta`` for grader
keyword arguments), where ``expected`` is the verdict of the *source's own* grader or test suite,
not ours. ``agreement.py`` then grades every case with our graders. Known disagreements are kept
in ``disagreements.json`` (case id -> reason), not here, so rebuilding never loses them.

The repositories are read with ``git show COMMIT:PATH`` from local clones (or bare mirrors) named
``<owner>+<name>`` under ``--root``, at the commits listed in SOURCES.md::

    git clone https://github.com/huggingface/Math-Verify ROOT/huggingface+Math-Verify
    ...
    python tests/data/graders/build_cases.py --root ROOT
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent

COMMITS = {
    "huggingface/Math-Verify": "5d148cfaaf99214c2e4ffb4bc497ab042c592a7a",
    "huggingface/lighteval": "3fd15266bc8448b797e61462d293aa3fd40b3580",
    "hendrycks/math": "985bdc1696e88e8643f081a0ff4719da39f2ae2a",
    "QwenLM/Qwen2.5-Math": "a45202bd16f1ec06f433442dc1152d0074773465",
    "EleutherAI/lm-evaluation-harness": "4e7e0d47f33bc71070c1d38394bafbb52b117163",
    "openai/grade-school-math": "3101c7d5072418e28b9008a6636bde82a006892c",
    # Byte-identical (sha256 35dc4108…) to openai/prm800k prm800k/math_splits/test.jsonl, which
    # prm800k stores in Git LFS; this repository keeps a plain copy of the same file.
    "MobileLLM/BudgetThinker": "f0466b9d37595f46603387baa5930e312fefb7f5",
}
MATH500_SHA256 = "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"


def show(root: Path, repo: str, path: str) -> str:
    gitdir = root / repo.replace("/", "+")
    if (gitdir / "repo").is_dir():  # a mirror layout: <owner>+<name>/repo
        gitdir = gitdir / "repo"
    out = subprocess.run(
        ["git", "-C", str(gitdir), "show", f"{COMMITS[repo]}:{path}"], capture_output=True, check=True
    )
    return out.stdout.decode("utf-8")


def case(benchmark, completion, gold, expected, source, note, **meta) -> dict:
    row = {
        "benchmark": benchmark,
        "completion": completion,
        "gold": gold,
        "expected": bool(expected),
        "source": source,
        "note": note,
    }
    if meta:
        row["meta"] = meta
    return row


# --------------------------------------------------------------------------- pytest parametrize lists


def _parametrized_cases(source_text: str):
    """Yield (function name, compare_strings keyword literals, argnames, row) for every literal
    row of every ``@pytest.mark.parametrize`` list in a test module."""
    tree = ast.parse(source_text)
    for func in [n for n in tree.body if isinstance(n, ast.FunctionDef)]:
        call_kwargs: dict = {}
        for node in ast.walk(func):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "compare_strings":
                for kw in node.keywords:
                    try:
                        call_kwargs[kw.arg] = ast.literal_eval(kw.value)
                    except ValueError:
                        call_kwargs[kw.arg] = ast.unparse(kw.value)
        for deco in func.decorator_list:
            if not (isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("parametrize")):
                continue
            names = [n.strip() for n in ast.literal_eval(deco.args[0]).split(",")]
            for element in deco.args[1].elts:
                try:
                    row = ast.literal_eval(element)
                except ValueError:  # pytest.param(...), Language.X: not a plain English case
                    continue
                yield func.name, call_kwargs, names, dict(zip(names, row))


def math_verify_tests(root: Path) -> list[dict]:
    """Math-Verify's own regression tests: ``compare_strings(gold, pred) == expected``."""
    rows = []
    text = show(root, "huggingface/Math-Verify", "tests/test_all.py")
    for func, kwargs, names, row in _parametrized_cases(text):
        if not {"gold", "pred", "expected"} <= set(names):
            continue
        precision = row.get("precision", kwargs.get("precision", 6))
        if not isinstance(precision, int) or precision != 6 or kwargs.get("strict") is False:
            continue  # other rounding/strictness settings than the ones our grader uses
        if kwargs.get("allow_set_relation_comp") not in (None, False) or row.get("allow_set_relation_comp"):
            continue
        match_types = kwargs.get("match_types", ["latex", "expr"])
        rows.append(
            case(
                "math500",
                row["pred"],
                row["gold"],
                row["expected"],
                "math_verify_tests",
                f"tests/test_all.py::{func} match_types={match_types}",
            )
        )
    # Plain parse/verify with default settings.
    text = show(root, "huggingface/Math-Verify", "tests/test_yujianll.py")
    for func, _, _, row in _parametrized_cases(text):
        rows.append(
            case(
                "math500",
                row["pred"],
                row["gold"],
                row["result"],
                "math_verify_tests",
                f"tests/test_yujianll.py::{func}",
            )
        )
    return rows


def lighteval_tests(root: Path) -> list[dict]:
    """lighteval's extractive-match tests (English) and its GPQA instruct metric test cases."""
    rows = []
    text = show(root, "huggingface/lighteval", "tests/unit/metrics/test_extractive_match.py")
    for func, kwargs, names, row in _parametrized_cases(text):
        if not {"gold", "pred", "expected"} <= set(names) or "language" in names:
            continue
        precision = row.get("precision", kwargs.get("precision", 6))
        if not isinstance(precision, int) or precision != 6:
            continue
        match_types = kwargs.get("match_types", ["latex", "expr"])
        note = f"tests/unit/metrics/test_extractive_match.py::{func} match_types={match_types}"
        if match_types == ["NativeLetters"]:
            # The gold choice text leads with its letter ("(D) Alina") or states it ("the answer is\n(C)").
            letter = re.match(r"\(?([A-D])\b", row["gold"]) or re.search(
                r"answer is\s*\(?([A-D])\b", row["gold"]
            )
            rows.append(
                case("gpqa_diamond", row["pred"], letter.group(1), row["expected"], "lighteval_tests", note)
            )
        else:
            rows.append(case("math500", row["pred"], row["gold"], row["expected"], "lighteval_tests", note))
    suite = json.loads(
        show(root, "huggingface/lighteval", "tests/unit/metrics/test_cases/gpqa_instruct_metric.json")
    )
    for test in suite["test_cases"]:
        doc = test["doc"]
        gold = doc["choices"][doc["gold_index"]]
        for text in test["model_response"]["text"]:
            rows.append(
                case(
                    "gpqa_diamond",
                    text,
                    gold,
                    test["expected_output"]["extractive_match"] == 1.0,
                    "lighteval_tests",
                    f"tests/unit/metrics/test_cases/gpqa_instruct_metric.json: {test['name']}",
                )
            )
    return rows


def hendrycks_is_equiv(root: Path) -> list[dict]:
    """hendrycks/math ``is_equiv`` unit tests: answer strings, graded as a boxed final answer."""
    rows = []
    tree = ast.parse(show(root, "hendrycks/math", "modeling/math_equivalence_test.py"))
    for method in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        values = {}
        for node in method.body:
            if isinstance(node, ast.Assign):
                values[node.targets[0].id] = ast.literal_eval(node.value)
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                assertion = node.value.func.attr
                a, b = (values[arg.id] for arg in node.value.args[0].args)
                rows.append(
                    case(
                        "math500",
                        f"The final answer is $\\boxed{{{b}}}$.",
                        a,
                        assertion == "assertTrue",
                        "hendrycks_is_equiv",
                        f"modeling/math_equivalence_test.py::{method.name}",
                    )
                )
    return rows


# --------------------------------------------------------------------------- graded completions


def qwen25_math_cot(root: Path) -> list[dict]:
    """Qwen2.5-Math's example run: 100 MATH problems x 8 sampled completions, each scored by its
    ``math_equal`` grader."""
    rows = []
    text = show(root, "QwenLM/Qwen2.5-Math", "evaluation/data/eval_rm_maj_example/math_cot_100.jsonl")
    for line in text.splitlines():
        item = json.loads(line)
        for k, (completion, score) in enumerate(zip(item["code"], item["score"])):
            rows.append(
                case(
                    "math500",
                    completion,
                    item["gt"],
                    score,
                    "qwen25_math_cot",
                    f"idx {item['idx']} sample {k}",
                )
            )
    return rows


def gsm8k_model_solutions(root: Path, problems: int = 200) -> list[dict]:
    """OpenAI's GPT-3 GSM8K solutions with their ``is_correct`` verdicts (first ``problems`` rows)."""
    rows = []
    text = show(root, "openai/grade-school-math", "grade_school_math/data/example_model_solutions.jsonl")
    for i, line in enumerate(text.splitlines()[:problems]):
        item = json.loads(line)
        gold = item["ground_truth"].rsplit("A:", 1)[-1].strip()
        for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
            sol = item[model]
            rows.append(
                case(
                    "gsm8k",
                    sol["solution"],
                    gold,
                    sol["is_correct"],
                    "gsm8k_model_solutions",
                    f"row {i} {model}",
                )
            )
    return rows


def gsm8k_reference(root: Path) -> list[dict]:
    """Every GSM8K test reference solution (with its ``<<calc>>`` annotations), graded against its
    own ``####`` answer."""
    rows = []
    text = show(root, "openai/grade-school-math", "grade_school_math/data/test.jsonl")
    for i, line in enumerate(text.splitlines()):
        answer = json.loads(line)["answer"]
        gold = answer.rsplit("####", 1)[-1].strip()
        rows.append(case("gsm8k", answer, gold, True, "gsm8k_reference", f"test.jsonl row {i}"))
    return rows


def lm_eval_gsm8k(root: Path) -> list[dict]:
    """lm-evaluation-harness GSM8K chain-of-thought exemplars (their targets are correct answers)."""
    import yaml

    rows = []
    for path in ("lm_eval/tasks/gsm8k/gsm8k-cot.yaml", "lm_eval/tasks/gsm8k/gsm8k-cot-llama.yaml"):
        config = yaml.safe_load(show(root, "EleutherAI/lm-evaluation-harness", path))
        for j, sample in enumerate(config["fewshot_config"]["samples"]):
            target = sample["target"]
            gold = re.findall(r"answer is:? \$?(-?[\d,.]+?)\.?$", target.strip())[-1]
            rows.append(case("gsm8k", target, gold, True, "lm_eval_gsm8k", f"{path} fewshot {j}"))
            wrong = str(int(gold.replace(",", "")) + 1)
            rows.append(case("gsm8k", target, wrong, False, "lm_eval_gsm8k", f"{path} fewshot {j}, gold+1"))
    return rows


def math500_reference(root: Path) -> list[dict]:
    """Every MATH-500 reference solution, graded against its own answer."""
    import hashlib

    text = show(root, "MobileLLM/BudgetThinker", "evaluation/data/math500/test_ori.jsonl")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != MATH500_SHA256:
        raise SystemExit(f"MATH-500 copy differs from openai/prm800k's (sha256 {digest})")
    rows = []
    for line in text.splitlines():
        item = json.loads(line)
        rows.append(
            case("math500", item["solution"], item["answer"], True, "math500_reference", item["unique_id"])
        )
    return rows


BUILDERS = {
    "math_verify_tests": math_verify_tests,
    "lighteval_tests": lighteval_tests,
    "hendrycks_is_equiv": hendrycks_is_equiv,
    "qwen25_math_cot": qwen25_math_cot,
    "gsm8k_model_solutions": gsm8k_model_solutions,
    "gsm8k_reference": gsm8k_reference,
    "lm_eval_gsm8k": lm_eval_gsm8k,
    "math500_reference": math500_reference,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder of <owner>+<name> clones")
    parser.add_argument("--only", nargs="*", choices=sorted(BUILDERS), help="rebuild only these sources")
    args = parser.parse_args()
    for name in args.only or BUILDERS:
        rows = BUILDERS[name](args.root)
        with open(HERE / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for i, row in enumerate(rows):
                fh.write(json.dumps({"id": f"{name}:{i}", **row}, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} cases")


if __name__ == "__main__":
    main()
