"""Evaluation package: serving, reasoning suite, graders, reward gate, thought-use probe.

Modules, one job each (docs/eval.md):

* ``serving``    start/stop an OpenAI-compatible server (SGLang on GPU, ``transformers serve`` on CPU)
* ``client``     k samples per problem as k requests, progress bar with samples/s and tok/s
* ``benchmarks`` GSM8K, MATH-500, GPQA-Diamond, OlympiadBench as declarative objects
* ``graders``    ``grade(benchmark, completion, gold, **meta) -> Grade`` under a hard time limit
* ``metrics``    Mean@k, unbiased pass@k, Wilson intervals, macro averages, paired deltas
* ``results``    per-sample JSONL with resume and regrade
* ``suite``      generate → grade → append, one arm at a time
* ``report``     markdown + JSON tables in the reference run's format, PNG plots
* ``arms``       arm name → the model directory to serve
* ``reward_gate``, ``thought_probe``, ``continuation``: docs/method.md §5, §7 and the stage check

Command line: ``python -m eval {serve,suite,regrade,report,reward-gate,thought-probe,continuation}``.
"""
