"""Mean@k / Pass@k for reasoning benchmarks as a Hugging Face ``evaluate`` metric.

Load it from this directory (no Hub needed)::

    import evaluate
    metric = evaluate.load("eval/evaluate_metric")                  # grade completions
    metric.compute(predictions=[["... \\boxed{18}", "... 17"]], references=["18"], benchmark="gsm8k")

    flags = evaluate.load("eval/evaluate_metric", "correctness")    # already graded samples
    flags.compute(predictions=[[True, False, False, True]], k=[1, 2, 4])

Grading goes through ``eval.graders.grade`` (killable worker, hard time limit), so the
``eval`` package of trl_ext must be importable. Definitions: docs/eval.md.
"""

from __future__ import annotations

import datasets
import evaluate

_DESCRIPTION = """Mean@k (correct samples / samples, the unbiased estimate of pass@1), the unbiased
pass@k estimator of Chen et al. (2021) for each requested k <= n, and Pass@k-any (problems with
at least one correct sample), with Wilson 95% intervals. Each prediction is the list of the n
samples of one problem."""

_CITATION = """@article{chen2021codex, title={Evaluating Large Language Models Trained on Code},
author={Chen, Mark and others}, journal={arXiv preprint arXiv:2107.03374}, year={2021}}"""

_KWARGS = """
Args:
    predictions: one list per problem: its n sampled completions ("default" config) or the n
        correctness flags ("correctness" config).
    references: "default" config only: the gold answer of each problem (GPQA: the letter as shown).
    benchmark: "default" config only: gsm8k | math500 | gpqa_diamond | olympiadbench.
    metas: optional per-problem grading metadata (OlympiadBench: is_multiple_answer, tolerance).
    k: the k values for pass@k (default: 1 and n).
    timeout_s: hard wall-clock limit per grading call (default 10).
Returns:
    mean_at_k, mean_at_k_ci95, pass_at_k_any, pass_at_k_any_ci95, pass@<k> for each k,
    num_problems, num_samples, samples_per_problem, grader_timeouts, grader_errors.
"""


class ReasoningPassAtK(evaluate.Metric):
    def _info(self):
        if self.config_name == "correctness":
            features = datasets.Features({"predictions": datasets.Sequence(datasets.Value("bool"))})
        else:
            features = datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Value("string"),
                }
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=features,
            reference_urls=["https://arxiv.org/abs/2107.03374"],
        )

    def _compute(self, predictions, references=None, benchmark=None, metas=None, k=None, timeout_s=10.0):
        from eval.graders import default_pool
        from eval.metrics import score_rows

        timeouts = errors = 0
        if self.config_name == "correctness":
            flags = [[bool(x) for x in sample_flags] for sample_flags in predictions]
        else:
            if benchmark is None:
                raise ValueError("pass benchmark= (gsm8k, math500, gpqa_diamond or olympiadbench)")
            metas = metas or [{} for _ in predictions]
            pool = default_pool(timeout_s)
            items = [
                (benchmark, completion, gold, dict(meta))
                for completions, gold, meta in zip(predictions, references, metas)
                for completion in completions
            ]
            grades = iter(pool.grade_many(items))
            flags = []
            for completions in predictions:
                problem = [next(grades) for _ in completions]
                timeouts += sum(g.timed_out for g in problem)
                errors += sum(g.error is not None and not g.timed_out for g in problem)
                flags.append([g.correct for g in problem])
        rows = [{"id": str(i), "correct": ok} for i, problem in enumerate(flags) for ok in problem]
        score = score_rows("metric", benchmark or "samples", rows)
        n = score.samples_per_problem
        ks = sorted(set(k if k is not None else [1, n]))
        bad = [kk for kk in ks if not 1 <= kk <= n]
        if bad:
            raise ValueError(f"k={bad} is not in [1, n={n}] (n = the fewest samples of any problem)")
        from eval.metrics import pass_at_k

        result = {
            "mean_at_k": score.mean_at_k,
            "mean_at_k_ci95": list(score.mean_at_k_ci95),
            "pass_at_k_any": score.pass_at_k_any,
            "pass_at_k_any_ci95": list(score.pass_at_k_any_ci95),
            "num_problems": score.num_problems,
            "num_samples": score.num_samples,
            "samples_per_problem": n,
            "grader_timeouts": timeouts,
            "grader_errors": errors,
        }
        for kk in ks:
            values = [pass_at_k(len(p), sum(p), kk) for p in flags]
            result[f"pass@{kk}"] = sum(values) / len(values)
        return result
