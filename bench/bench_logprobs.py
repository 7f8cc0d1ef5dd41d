"""Peak memory and time of the DPO log-prob pass (forward + backward) for K rollouts, chunked vs unchunked.

The model body is the embedded tiny Qwen3 (2 layers, hidden 128) but the vocabulary is the real 151,936, so
the
LM head / log-softmax dominates exactly as it does at Qwen3 scale. Each variant runs in a fresh subprocess so
its peak resident memory (CPU, ``ru_maxrss``) or peak allocated memory (CUDA) is its own.

    python bench/bench_logprobs.py                       # K=16, prefix 384, suffix 128 (the METHOD defaults)
    python bench/bench_logprobs.py --prefix-len 64       # lighter, for a shared CPU box
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, str(REPO))
    from trl_ext.assets import embedded_default
    from trl_ext.logprobs import configure_chunks, sequence_logprobs

    configure_chunks(args.token_chunk, args.vocab_chunk)

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = AutoModelForCausalLM.from_pretrained(embedded_default().model_dir, dtype=torch.float32).to(device)
    vocab = model.config.vocab_size
    total = args.prefix_len + args.suffix_len
    ids = torch.randint(0, vocab, (args.k, total), device=device)
    att = torch.ones_like(ids)
    score = torch.zeros_like(ids)
    score[:, args.prefix_len :] = 1
    chunked = args.variant == "chunked"
    # warm-up on one row (JIT / allocator), then reset the peak counters
    sequence_logprobs(model, ids[:1], att[:1], score[:1], chunked=chunked).sum().backward()
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for _ in range(args.repeats):
        logps = sequence_logprobs(model, ids, att, score, chunked=chunked)
        logps.sum().backward()
        model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(
        json.dumps(
            {
                "variant": args.variant,
                "vocab": vocab,
                "seconds": (time.perf_counter() - start) / args.repeats,
                "peak_gib": peak_gib,
                "warmup_rss_gib": base_rss / 2**20,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=16, help="rollouts scored together (rows)")
    p.add_argument("--prefix-len", type=int, default=384)
    p.add_argument("--suffix-len", type=int, default=128)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--token-chunk", type=int, default=1024, help="tokens per tile of the chunked head")
    p.add_argument("--vocab-chunk", type=int, default=8192, help="vocabulary entries per tile")
    p.add_argument("--variant", choices=["chunked", "unchunked"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        return _child(args)

    rows = []
    for variant in ("unchunked", "chunked"):
        cmd = [sys.executable, __file__, "--variant", variant, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"{variant} run failed (exit {out.returncode})")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    un, ch = rows
    mem = "peak CUDA allocated" if args.device.startswith("cuda") else "peak RSS"
    print(
        f"\nlog-prob pass (fwd+bwd), K={args.k}, prefix {args.prefix_len} + suffix {args.suffix_len} tokens, "
        f"vocab {un['vocab']:,}, device {args.device}, "
        f"tile {args.token_chunk} tokens x {args.vocab_chunk} vocab\n"
    )
    print(f"| variant | seconds | {mem} (GiB) |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['seconds']:.2f} | {r['peak_gib']:.2f} |")
    print(
        f"| ratio unchunked/chunked | {un['seconds'] / ch['seconds']:.2f}x | "
        f"{un['peak_gib'] / ch['peak_gib']:.2f}x |"
    )


if __name__ == "__main__":
    main()
