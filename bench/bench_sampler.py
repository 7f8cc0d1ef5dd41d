"""Cost of one sampling step per sequence: transformers' warpers + ``torch.multinomial`` versus
``eval.nucleus_sampling`` (one run, one table).

The CPU server samples every sequence of its batch at every decode step; this is that step alone
(temperature 0.6, top_p 0.95, Qwen3's 151,936-token vocabulary by default), in this process, for
nearly flat logits (a random-weight model, where the nucleus is most of the vocabulary) and
peaked ones (a trained model).

    python bench/bench_sampler.py
    python bench/bench_sampler.py --vocab 49152 --batch 1 8 32 64
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.nucleus_sampling import nucleus_sample  # noqa: E402

TEMPERATURE, TOP_P = 0.6, 0.95


def transformers_step(scores: torch.Tensor) -> torch.Tensor:
    """What ``transformers serve --continuous-batching`` runs: its warpers, softmax, multinomial."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    scores = TopPLogitsWarper(TOP_P)(None, TemperatureLogitsWarper(TEMPERATURE)(None, scores))
    return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)


def nucleus_step(scores: torch.Tensor) -> torch.Tensor:
    return nucleus_sample(scores, TOP_P, TEMPERATURE)


def ms_per_sequence(step, scores: torch.Tensor, repeats: int) -> float:
    step(scores)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        step(scores)
    return (time.perf_counter() - start) / repeats / scores.size(0) * 1000


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for logits, scale in (("flat (random model)", 0.05), ("peaked (trained model)", 3.0)):
        for batch in args.batch:
            scores = torch.randn(batch, args.vocab, generator=generator) * scale
            stock = ms_per_sequence(transformers_step, scores, args.repeats)
            ours = ms_per_sequence(nucleus_step, scores, args.repeats)
            rows.append({"logits": logits, "batch": batch, "transformers_ms": stock, "nucleus_ms": ours})
    print(
        f"\nsampling step, vocabulary {args.vocab}, T={TEMPERATURE}, top_p={TOP_P}, "
        f"{torch.get_num_threads()} threads, ms per sequence\n"
    )
    print("| logits | batch | transformers warpers + multinomial | eval.nucleus_sampling | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['logits']} | {r['batch']} | {r['transformers_ms']:.2f} | {r['nucleus_ms']:.2f} "
            f"| {r['transformers_ms'] / r['nucleus_ms']:.1f}x |"
        )
    return rows


if __name__ == "__main__":
    main()
