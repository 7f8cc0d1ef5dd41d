"""The reasoning suite: generate k samples per problem, grade each as it arrives, append it.

One call of :func:`run_suite` evaluates one arm against an already running endpoint (the CLI
starts and stops the server around it). Every sample is appended to
``<out>/<arm>/<benchmark>.jsonl`` right after grading, so killing the run loses at most the
in-flight requests, and rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eval.benchmarks import get_benchmark, resolve_source
from eval.benchmarks.base import SampleRequest
from eval.client import EvalClient, SamplingConfig
from eval.graders import GraderPool
from eval.metrics import score_rows
from eval.results import ResumeMismatchError, SampleStore, read_failures, read_samples, write_json
from trl_ext.client import GenerationResult

logger = logging.getLogger(__name__)


@dataclass
class SuiteConfig:
    """Everything that determines the samples of one arm (recorded in summary.json)."""

    arm: str
    out_dir: Path
    benchmarks: list[str] = field(
        default_factory=lambda: ["gsm8k", "math500", "gpqa_diamond", "olympiadbench"]
    )
    sources: dict[str, str] = field(default_factory=dict)  # benchmark -> local file / HF id / "embedded"
    num_samples: int = 8
    limit: int | None = None  # first N problems per benchmark (smoke runs)
    mode: str = "raw"  # raw completions (base / SFT models) or chat
    seed: int = 4337  # GPQA option permutation seed
    gpqa_shuffle: str = "per_problem"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_concurrency: int = 32
    request_timeout_s: float = 180.0
    max_retries: int = 3
    retry_backoff_s: float = 0.5  # doubled after each failed attempt
    grader_timeout_s: float = 10.0
    grader_workers: int = 1
    progress: bool = True
    preset: str = "full"  # eval.presets: datasets and prompts of each benchmark
    grader: str = "default"  # eval.graders registry name
    model: dict = field(default_factory=dict)  # what was served: dir, name, random_weights (for reports)


def build_requests(config: SuiteConfig, benchmark_name: str) -> list[SampleRequest]:
    from eval.presets import get_preset

    benchmark = get_preset(config.preset).benchmark(benchmark_name)
    source = resolve_source(benchmark.name, config.sources.get(benchmark.name))
    problems = benchmark.load(source, limit=config.limit)
    return [
        benchmark.request(p, i, mode=config.mode, seed=config.seed, shuffle=config.gpqa_shuffle)
        for p in problems
        for i in range(config.num_samples)
    ]


def sample_row(
    config: SuiteConfig, benchmark: str, request: SampleRequest, result: GenerationResult, grade
) -> dict:
    return {
        "arm": config.arm,
        "benchmark": benchmark,
        "id": request.problem.id,
        "sample_idx": request.sample_idx,
        "prompt_hash": request.prompt_hash,
        "completion": result.text,
        "extracted": grade.extracted,
        "gold": request.gold,
        "correct": grade.correct,
        "completion_tokens": result.completion_tokens,
        "finish_reason": result.finish_reason,
        "permutation": request.permutation,
        "grade_error": grade.error,
        "latency_s": round(result.latency_s, 4),
        "attempts": result.attempts,
        "grade_meta": dict(request.problem.grade_meta),
        "mode": config.mode,
        "endpoint": result.endpoint,
        "preset": config.preset,
        "prompt_version": request.prompt_version,
        "grader": grade.grader,
    }


def prepare_requests(config: SuiteConfig) -> dict[str, list[SampleRequest]]:
    """Load every benchmark and build its requests: done before a server is started, so a bad
    file or dataset id fails in a second instead of after the server's warm-up."""
    return {get_benchmark(name).name: build_requests(config, name) for name in config.benchmarks}


async def run_benchmark(
    config: SuiteConfig, benchmark: str, requests: list[SampleRequest], client: EvalClient, pool: GraderPool
) -> dict:
    """Generate and grade the missing samples of one benchmark; return run accounting."""
    store = SampleStore.open(config.out_dir, config.arm, benchmark)
    todo = [r for r in requests if not store.done(r.problem.id, r.sample_idx, r.prompt_hash)]
    resumed = len(requests) - len(todo)
    if resumed:
        logger.info(
            "%s/%s: %d of %d samples already stored, %d to go",
            config.arm,
            benchmark,
            resumed,
            len(requests),
            len(todo),
        )
    counts = {"requested": len(requests), "resumed": resumed, "generated": 0, "failed": 0}

    async def on_result(request: SampleRequest, result: GenerationResult) -> None:
        if not result.ok:
            counts["failed"] += 1
            store.add_failure(
                config.arm,
                benchmark,
                request.problem.id,
                request.sample_idx,
                result.error or "?",
                attempts=result.attempts,
                prompt_hash=request.prompt_hash,
            )
            return
        meta = dict(request.problem.grade_meta)
        future = pool.submit(benchmark, result.text, request.gold, grader=config.grader, **meta)
        grade = await asyncio.wrap_future(future)
        store.add(sample_row(config, benchmark, request, result, grade))
        counts["generated"] += 1

    meter = await client.generate(
        todo, config.sampling, on_result=on_result, desc=f"{config.arm}/{benchmark}"
    )
    counts["throughput"] = meter.to_dict()
    counts["missing"] = sum((r.problem.id, r.sample_idx) not in store.rows for r in requests)
    return counts


def summarize_arm(config: SuiteConfig, run_counts: dict[str, dict] | None = None) -> dict:
    """Recompute every aggregate of the arm from its JSONL files and write summary.json."""
    return write_summary(config.out_dir, config.arm, config.benchmarks, _config_dict(config), run_counts)


def write_summary(
    out_dir: str | Path,
    arm: str,
    benchmarks: list[str],
    config: dict,
    run_counts: dict[str, dict] | None = None,
) -> dict:
    """``<out>/<arm>/summary.json`` from the rows: one entry per benchmark plus completeness."""
    summary: dict = {"arm": arm, "benchmarks": {}, "config": config}
    for name in benchmarks:
        benchmark = get_benchmark(name).name
        path = Path(out_dir) / arm / f"{benchmark}.jsonl"
        rows = read_samples(path) if path.exists() and path.stat().st_size else []
        entry = score_rows(arm, benchmark, rows).to_dict() if rows else {"num_samples": 0}
        entry["examples_path"] = str(path)
        failures = read_failures(Path(out_dir) / arm / f"{benchmark}.failures.jsonl")
        stored = {(r["id"], r["sample_idx"]) for r in rows}
        entry["unresolved_request_failures"] = len({(f["id"], f["sample_idx"]) for f in failures} - stored)
        if run_counts and benchmark in run_counts:
            entry["run"] = run_counts[benchmark]
        summary["benchmarks"][benchmark] = entry
    summary["complete"] = all(
        e.get("run", {}).get("missing", 0) == 0 and e.get("unresolved_request_failures", 0) == 0
        for e in summary["benchmarks"].values()
    )
    write_json(Path(out_dir) / arm / "summary.json", _finite(summary))
    return summary


def refresh_summary(out_dir: str | Path, arm: str) -> dict:
    """Recompute ``summary.json`` after the rows changed (``regrade``): every aggregate is rebuilt
    from the rows; the run record (config, per-benchmark run counts, wall time) is kept."""
    from eval.benchmarks import BENCHMARKS

    path = Path(out_dir) / arm / "summary.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    found = [b for b in BENCHMARKS if (Path(out_dir) / arm / f"{b}.jsonl").exists()]
    benchmarks = list(dict.fromkeys([*old.get("benchmarks", {}), *found]))
    runs = {b: e["run"] for b, e in old.get("benchmarks", {}).items() if "run" in e}
    config = dict(old.get("config", {}))
    summary = write_summary(out_dir, arm, benchmarks, config, runs)
    graders = {e.get("grader") for e in summary["benchmarks"].values() if e.get("grader")}
    if len(graders) == 1:
        summary["config"]["grader"] = graders.pop()
    for key in ("wall_time_s",):
        if key in old:
            summary[key] = old[key]
    write_json(path, _finite(summary))
    return summary


def _config_dict(config: SuiteConfig) -> dict:
    data = asdict(config)
    data["out_dir"] = str(config.out_dir)
    return data


def _finite(value):
    """NaN/inf → None so summary.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def _run_all(
    config: SuiteConfig, base_urls: list[str], requests: dict[str, list[SampleRequest]]
) -> dict[str, dict]:
    client = EvalClient(
        base_urls,
        max_concurrency=config.max_concurrency,
        timeout_s=config.request_timeout_s,
        max_retries=config.max_retries,
        backoff_s=config.retry_backoff_s,
        progress=config.progress,
    )
    counts: dict[str, dict] = {}
    try:
        with GraderPool(workers=config.grader_workers, timeout_s=config.grader_timeout_s) as pool:
            for benchmark, bench_requests in requests.items():
                timeouts_before, errors_before = pool.timeouts, pool.errors
                counts[benchmark] = await run_benchmark(config, benchmark, bench_requests, client, pool)
                counts[benchmark]["grader_timeouts"] = pool.timeouts - timeouts_before
                counts[benchmark]["grader_errors"] = pool.errors - errors_before
    finally:
        await client.aclose()
    return counts


def check_sampling(config: SuiteConfig) -> None:
    """Refuse to resume with different sampling settings, preset or grader: the prompt hash cannot
    see them, and rows sampled at two temperatures or graded two ways would be averaged as one run
    (``regrade --grader`` is the way to change the grader of stored rows)."""
    path = Path(config.out_dir) / config.arm / "sampling.json"
    current = {**asdict(config.sampling), "preset": config.preset, "grader": config.grader}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        has_rows = any((Path(config.out_dir) / config.arm).glob("*.jsonl"))
        stored.setdefault("preset", current["preset"])  # files from before presets were recorded
        stored.setdefault("grader", current["grader"])
        if stored != current and has_rows:
            changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
            raise ResumeMismatchError(
                f"{path}: stored samples were drawn with other sampling settings ({', '.join(changed)}: "
                f"{ {k: stored.get(k) for k in changed} } -> { {k: current.get(k) for k in changed} }). "
                "Use a new --out directory or pass --overwrite."
            )
    write_json(path, current)


def run_suite(
    config: SuiteConfig, base_urls: list[str], requests: dict[str, list[SampleRequest]] | None = None
) -> dict:
    """Evaluate ``config.arm`` against running endpoints; return (and write) its summary."""
    start = time.perf_counter()
    requests = requests if requests is not None else prepare_requests(config)
    check_sampling(config)
    counts = asyncio.run(_run_all(config, base_urls, requests))
    summary = summarize_arm(config, counts)
    summary["wall_time_s"] = round(time.perf_counter() - start, 2)
    write_json(Path(config.out_dir) / config.arm / "summary.json", _finite(summary))
    return summary
