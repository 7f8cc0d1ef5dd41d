"""Eval-client throughput at concurrency 32 versus 1 against the same server (one run, one table).

Serves the embedded tiny Qwen3 with the CPU server (or uses ``--base-url``, e.g. an SGLang
server on a GPU) and sends the same fan-out workload (problems × k samples, one request each)
at each concurrency level. Prints samples/s, generated tok/s and the ratio to concurrency 1.

    python bench/bench_client.py                                  # embedded GSM8K, 8 problems × 4 samples
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-url", action="append", default=[], help="running endpoint(s); default: serve one"
    )
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4, help="k samples per problem (k requests)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=1, help="runs per level; the best is reported")
    return parser.parse_args()


async def measure(urls: list[str], requests, concurrency: int, max_tokens: int) -> dict:
    client = EvalClient(urls, max_concurrency=concurrency, progress=False, max_retries=1)
    try:
        meter = await client.generate(requests, SamplingConfig(max_tokens=max_tokens, temperature=0.6))
    finally:
        await client.aclose()
    return meter.to_dict()


def main() -> None:
    args = parse_args()
    gsm8k = get_benchmark("gsm8k")
    problems = gsm8k.load(resolve_source("gsm8k", "embedded"), limit=args.problems)
    requests = [gsm8k.request(p, i) for p in problems for i in range(args.samples)]
    with contextlib.ExitStack() as stack:
        urls = args.base_url
        if not urls:
            from eval.serving import launch_server
            from trl_ext.assets import embedded_default

            handle = stack.enter_context(launch_server(embedded_default().model_dir, backend="auto"))
            urls = [handle.base_url]
            print(f"server: {handle.backend} at {handle.base_url}")
        asyncio.run(measure(urls, requests[: min(4, len(requests))], 4, args.max_tokens))  # warm-up
        results = {}
        for level in args.concurrency:
            runs = [asyncio.run(measure(urls, requests, level, args.max_tokens)) for _ in range(args.repeats)]
            results[level] = max(runs, key=lambda r: r["samples_per_s"])
    base = results[args.concurrency[0]]
    workload = f"{len(requests)} samples ({args.problems} problems × {args.samples})"
    print(f"\n{workload}, max_tokens={args.max_tokens}\n")
    print("| concurrency | samples | failed | wall s | samples/s | tok/s | speed-up vs first |")
    print("|---|---|---|---|---|---|---|")
    for level, r in results.items():
        ratio = r["samples_per_s"] / base["samples_per_s"] if base["samples_per_s"] else float("nan")
        print(f"| {level} | {r['samples']} | {r['failed']} | {r['elapsed_s']:.2f} | {r['samples_per_s']:.2f} "
              f"| {r['tokens_per_s']:.1f} | {ratio:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
