"""Eval-client throughput at concurrency 32 versus 1 against the same server (one run, one table).

Serves the embedded tiny Qwen3 with the CPU server (``python -m eval.cpu_server``: ``transformers serve
--continuous-batching`` with the sort-free sampler, as ``make eval`` does; ``--stock-sampling`` for
transformers' own sampler; or uses ``--base-url``, e.g. an SGLang server on a GPU) and sends the same
fan-out workload (problems × k samples, one request each, GSM8K prompts of the default suite) at
each concurrency level. Prints samples/s, generated tok/s and the speed-up over the first level.
A batching server should give several times more samples/s at 32 in flight than at 1; a server
that runs one request at a time gives ~1.0x.

    python bench/bench_client.py         # 16 embedded GSM8K problems × 4 samples × 64 tokens
    python bench/bench_client.py --base-url http://127.0.0.1:30000 --problems 64 --samples 8 --max-tokens 256
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eval.benchmarks import get_benchmark, resolve_source  # noqa: E402
from eval.client import EvalClient, SamplingConfig  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-url", action="append", default=[], help="running endpoint(s); default: serve one"
    )
    parser.add_argument("--model-dir", help="model to serve (default: the embedded tiny Qwen3)")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4, help="k samples per problem (k requests)")
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="per sample; 64 is the demo preset's (seed preset: 512)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--top-p", type=float, default=0.95, help="1.0 skips the vocabulary sort that dominates CPU sampling"
    )
    parser.add_argument(
        "--stock-sampling",
        action="store_true",
        help="serve with transformers' own top-p sampler (sorts the vocabulary per sequence) instead of "
        "eval.nucleus_sampling",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per level; the best is reported")
    return parser.parse_args(argv)


async def measure(urls: list[str], requests, concurrency: int, sampling: SamplingConfig) -> dict:
    client = EvalClient(urls, max_concurrency=concurrency, progress=False, max_retries=1, timeout_s=600)
    try:
        meter = await client.generate(requests, sampling)
    finally:
        await client.aclose()
    return meter.to_dict()


def render(results: dict[int, dict], workload: str) -> str:
    first = results[next(iter(results))]
    lines = [
        workload,
        "",
        "| concurrency | samples | failed | wall s | samples/s | tok/s | speed-up vs first |",
        "|---|---|---|---|---|---|---|",
    ]
    for level, r in results.items():
        ratio = r["samples_per_s"] / first["samples_per_s"] if first["samples_per_s"] else float("nan")
        lines.append(
            f"| {level} | {r['samples']} | {r['failed']} | {r['elapsed_s']:.2f} | {r['samples_per_s']:.2f} "
            f"| {r['tokens_per_s']:.1f} | {ratio:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[int, dict]:
    args = parse_args(argv)
    sampling = SamplingConfig(max_tokens=args.max_tokens, temperature=0.6, top_p=args.top_p)
    gsm8k = get_benchmark("gsm8k")
    problems = gsm8k.load(resolve_source("gsm8k", "embedded"), limit=args.problems)
    requests = [gsm8k.request(p, i) for p in problems for i in range(args.samples)]
    with contextlib.ExitStack() as stack:
        urls = args.base_url
        if not urls:
            from eval.serving import launch_server
            from trl_ext.assets import embedded_default

            model_dir = args.model_dir or embedded_default().model_dir
            handle = stack.enter_context(
                launch_server(
                    model_dir,
                    backend="auto",
                    sampling={"temperature": 0.6, "top_p": args.top_p},
                    stock_sampling=args.stock_sampling,
                )
            )
            urls = [handle.base_url]
            print(f"server: {handle.backend} at {handle.base_url} ({' '.join(handle.command[1:])})")
        asyncio.run(measure(urls, requests[: min(8, len(requests))], 8, sampling))  # warm-up
        results = {}
        for level in args.concurrency:
            runs = [asyncio.run(measure(urls, requests, level, sampling)) for _ in range(args.repeats)]
            results[level] = max(runs, key=lambda r: r["samples_per_s"])
    workload = (
        f"\n{len(requests)} samples ({args.problems} problems × {args.samples}), "
        f"max_tokens={args.max_tokens}, T={sampling.temperature}, top_p={sampling.top_p}"
    )
    print(render(results, workload))
    return results


if __name__ == "__main__":
    main()
