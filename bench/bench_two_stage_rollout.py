"""Two-stage rollout vs one ``generate`` of the same number of new tokens (issue 3 benchmark).

Both paths sample the same batch (K samples × prefixes, left-padded real corpus prompts) with the
same sampling settings; ``</think>`` and EOS are suppressed so every row produces exactly
``think + suffix`` new tokens on both paths (the two-stage path adds one inserted, unsampled
``</think>``). Runs alternate between the paths so machine load hits both alike; the table shows
medians. Target: two-stage ≥ 0.85× the single-stage token rate.

    python bench/bench_two_stage_rollout.py                       # tiny embedded model, CPU
    python bench/bench_two_stage_rollout.py --device cuda --batch 32 --think 48 --suffix 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import psutil
import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_ext.rollout import resolve_eos_token_ids, single_stage_generate, two_stage_generate

CLOSE_ID = 151668


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak on GPU, sampled process RSS on CPU."""

    def __init__(self, device: str):
        self.device, self.peak_bytes = device, 0

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop = threading.Event()
            process = psutil.Process()
            self.peak_bytes = process.memory_info().rss

            def sample():
                while not self._stop.wait(0.01):
                    self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


def prompts_from_corpus(tokenizer, corpus_path: Path, n: int, prompt_tokens: int) -> list[list[int]]:
    prompts = []
    for line in corpus_path.read_text().splitlines():
        ids = tokenizer.encode(json.loads(line)["text"], add_special_tokens=False)
        if len(ids) >= prompt_tokens:
            prompts.append(ids[:prompt_tokens] + tokenizer.encode(" <think>", add_special_tokens=False))
        if len(prompts) == n:
            return prompts
    raise SystemExit(f"{corpus_path}: fewer than {n} documents with {prompt_tokens} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model dir (default: the embedded tiny Qwen3)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--prefixes", type=int, default=2)
    parser.add_argument("--k", type=int, default=16, help="samples per prefix")
    parser.add_argument("--prompt-tokens", type=int, default=192)
    parser.add_argument("--think", type=int, default=48)
    parser.add_argument("--suffix", type=int, default=128)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from trl_ext.assets import embedded_default

    assets = embedded_default()
    model_dir = args.model or str(assets.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(args.device).eval()
    unique = prompts_from_corpus(tokenizer, Path(assets.corpus_path), args.prefixes, args.prompt_tokens)
    batch = [p for p in unique for _ in range(args.k)]
    eos = resolve_eos_token_ids(model, tokenizer)
    sampling = {"top_p": args.top_p, "suppress_tokens": [CLOSE_ID, *eos]}
    new_tokens = args.think + args.suffix

    def run_two_stage() -> int:
        rollouts = two_stage_generate(
            model, tokenizer, batch, args.think, args.suffix, decode=False, **sampling
        )
        return sum(r.num_new_tokens for r in rollouts)

    def run_single() -> int:
        return sum(len(x) for x in single_stage_generate(model, tokenizer, batch, new_tokens, **sampling))

    paths = {"single-stage generate": run_single, "two-stage rollout": run_two_stage}
    for fn in paths.values():  # warm-up (allocator, kernels)
        fn()
    results = {name: {"tok_s": [], "seconds": [], "peak": [], "tokens": 0} for name in paths}
    for repeat in range(args.repeats):
        order = list(paths) if repeat % 2 == 0 else list(reversed(paths))
        for name in order:
            with PeakMemory(args.device) as memory:
                start = time.perf_counter()
                tokens = paths[name]()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            results[name]["tok_s"].append(tokens / seconds)
            results[name]["seconds"].append(seconds)
            results[name]["peak"].append(memory.peak_bytes / 2**20)
            results[name]["tokens"] = tokens

    table = Table(title=f"Two-stage vs single-stage sampling ({args.device}, {Path(model_dir).name})")
    for column in ("path", "rows", "new tokens", "median s", "median tok/s", "peak MiB", "ratio"):
        table.add_column(column, justify="right")
    base = statistics.median(results["single-stage generate"]["tok_s"])
    for name, r in results.items():
        rate = statistics.median(r["tok_s"])
        table.add_row(
            name, str(len(batch)), str(r["tokens"]), f"{statistics.median(r['seconds']):.2f}", f"{rate:.1f}",
            f"{max(r['peak']):.0f}", f"{rate / base:.3f}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    ratio = statistics.median(results["two-stage rollout"]["tok_s"]) / base
    console.print(
        f"two-stage / single-stage token rate = {ratio:.3f} (target ≥ 0.85): "
        f"{'PASS' if ratio >= 0.85 else 'FAIL'}; {args.repeats} alternating repeats, "
        f"batch {args.prefixes}×{args.k}, prompt {args.prompt_tokens} tokens, "
        f"{args.think}+{args.suffix} new tokens, top_p {args.top_p}"
    )


if __name__ == "__main__":
    main()
