"""Pairwise-judge throughput (calls/s) at concurrency 1 versus 32 against a real local server.

By default a ``transformers serve --continuous-batching`` of the embedded tiny Qwen3 is started on 127.0.0.1
(CPU, the server ``make eval`` uses) and stopped by PID afterwards; ``--base-url`` measures a running server
instead (e.g. SGLang on a GPU box). A batching server gives several times more calls/s at concurrency 32
than at 1; one that runs a request at a time gives ~1.0x. Each call is one
pairwise quality prompt (the same prefix and two options every time, as in a training step) with a short
reply budget. The tiny random model cannot write a conclusion line, so every verdict is invalid there: the
number measured is transport + server throughput, which is what concurrency changes.

    python bench/bench_judge_throughput.py --calls 64 --max-tokens 64
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PREFIX = "The river carried the spring floods down from the mountains, and the farmers in the valley"
TEMPERATURE, TOP_P = 0.7, 0.6  # the reference run's judge sampling
OPTIONS = (" watched the water rise over their fields for three days.", " sold their cattle early that year.")


def measure(base_url: str, concurrency: int, calls: int, max_tokens: int) -> dict:
    from trl_ext.client import OpenAICompatibleClient
    from trl_ext.judges.pairwise import LLMPairwiseJudge

    client = OpenAICompatibleClient(base_url, max_concurrency=concurrency, timeout_s=300, max_retries=1)
    judge = LLMPairwiseJudge(client=client, max_tokens=max_tokens, temperature=TEMPERATURE, top_p=TOP_P)
    start = time.perf_counter()
    verdicts = judge.judge_pairs([PREFIX] * calls, [OPTIONS[0]] * calls, [OPTIONS[1]] * calls)
    seconds = time.perf_counter() - start
    failed = sum(v.error is not None and v.error.startswith("call_failed") for v in verdicts)
    return {
        "concurrency": concurrency,
        "calls": calls,
        "seconds": seconds,
        "calls_per_s": calls / seconds,
        "failed_calls": failed,
        "mean_latency_s": sum(v.latency_s for v in verdicts) / calls,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--base-url", help="a running OpenAI-compatible server (default: start transformers serve)"
    )
    p.add_argument("--calls", type=int, default=64, help="judge calls per setting")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=64,
        help="reply budget per call (the pairwise judge's own default is 256; 16 is too short for reasons)",
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=1, help="runs per level; the best is reported")
    p.add_argument("--model-dir", help="model to serve (default: the embedded tiny Qwen3)")
    p.add_argument(
        "--stock-sampling",
        action="store_true",
        help="serve with transformers' own top-p sampler instead of eval.nucleus_sampling",
    )
    args = p.parse_args()

    with contextlib.ExitStack() as stack:
        url = args.base_url
        if url is None:
            from eval.serving import launch_server
            from trl_ext.assets import embedded_default

            model_dir = args.model_dir or embedded_default().model_dir
            sampling = {"temperature": TEMPERATURE, "top_p": TOP_P}
            server = launch_server(
                model_dir, backend="auto", sampling=sampling, stock_sampling=args.stock_sampling
            )
            url = stack.enter_context(server).base_url
        measure(url, 8, 8, args.max_tokens)  # warm-up (first requests load the model, start batching)
        rows = [
            max(
                (measure(url, c, args.calls, args.max_tokens) for _ in range(args.repeats)),
                key=lambda r: r["calls_per_s"],
            )
            for c in args.concurrency
        ]

    print(
        f"\npairwise judge throughput, {args.calls} calls per setting, max_tokens {args.max_tokens}, "
        f"server {url}\n"
    )
    print("| concurrency | seconds | calls/s | mean latency (s) | failed calls |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['seconds']:.2f} | {r['calls_per_s']:.2f} | {r['mean_latency_s']:.2f} "
            f"| {r['failed_calls']} |"
        )
    if len(rows) >= 2:
        print(
            f"| ratio {rows[-1]['concurrency']}/{rows[0]['concurrency']} | | "
            f"{rows[-1]['calls_per_s'] / rows[0]['calls_per_s']:.2f}x | | |"
        )


if __name__ == "__main__":
    main()
