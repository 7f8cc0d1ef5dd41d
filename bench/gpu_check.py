"""GPU acceptance check: the reference run's step shapes on Qwen3-0.6B's architecture, one process, one GPU.

Builds a randomly initialised model with Qwen3-0.6B-Base's exact architecture from the config shipped in
``bench/configs/qwen3_0.6b_base.json`` (no Hub, no download), then measures in this process:

* **rlmt**: ``ThinkingGRPOTrainer`` optimizer steps at the reference shape: 2 prefixes × K=16 samples,
  thought ≤48 + suffix ≤128 tokens, ~512-token prompts, β=0.02 (frozen reference model), offline
  word-overlap judge;
* **phase3**: ``SelfImprovingOnlineDPOTrainer`` optimizer steps at the reference shape: 16 prefixes
  (4 per micro-batch × 4 accumulation) × (pivot + K=16 rollouts of 128 tokens), every pair judged
  (136 per prefix) by the offline likelihood judge (a frozen copy of the model);
* **sft**: TRL ``SFTTrainer`` steps at the reference batch: 16 sequences × 768 tokens (4 × accumulation 4);
* **decode**: Hugging Face ``generate`` throughput at batch 32 (bf16 weights, 512-token prompts).

Training runs with fp32 master weights and bf16 autocast (``bf16=True`` on an fp32 model); the check
records the parameter and optimizer-state dtypes it found after the steps. Each step is split into
rollout (time inside ``model.generate``), judge (time inside the judge) and the rest (log-probs, loss,
backward, optimizer). Peak GPU memory is the allocator's peak per section. The first optimizer step of
each trainer includes warm-up (kernel selection, allocator growth); ``steady`` averages the later ones.

The offline judges stand in for the LLM judge: their time is *not* what an SGLang judge fleet costs
(docs/scaling.md does that arithmetic from judge calls per step, which this check counts).

    make gpu-check                                     # full check: one CUDA GPU, a few minutes on an H200
    python bench/gpu_check.py --out docs/gpu_check.json
    python bench/gpu_check.py --tiny                   # CPU: tiny model, tiny shapes (run by the tests)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PrinterCallback,
    TrainerCallback,
)

CONFIG_PATH = Path(__file__).resolve().parent / "configs" / "qwen3_0.6b_base.json"
ENDOFTEXT = "<|endoftext|>"  # Qwen3-0.6B-Base ends documents with it (and pads with it)
FULL_TIME_BUDGET_S = 480.0


@dataclass(frozen=True)
class Shapes:
    """Every size the check uses; ``REFERENCE`` is the reference run's, ``TINY`` a CPU pipeline check."""

    k: int  # samples per prefix (RLMT group) and rollouts per prefix (phase3 pool = pivot + k)
    rlmt_prefixes: int  # prefixes per RLMT optimizer step
    rlmt_micro_batch: int  # samples per forward/backward micro-batch
    rlmt_prompt_tokens: int
    think_tokens: int
    suffix_tokens: int
    phase3_prefixes: int  # prefixes per phase3 optimizer step
    phase3_micro_batch: int  # prefixes per micro-batch
    phase3_prompt_tokens: int
    phase3_new_tokens: int
    sft_sequences: int  # sequences per SFT optimizer step
    sft_micro_batch: int
    sft_tokens: int
    decode_batch: int
    decode_prompt_tokens: int
    decode_new_tokens: int


REFERENCE = Shapes(16, 2, 16, 512, 48, 128, 16, 4, 384, 128, 16, 4, 768, 32, 512, 256)
TINY = Shapes(4, 2, 8, 32, 4, 8, 2, 1, 24, 8, 4, 2, 48, 4, 16, 8)
# --tiny keeps Qwen3's vocabulary, tokenizer and layer types and shrinks the widths and depth.
TINY_ARCHITECTURE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "max_window_layers": 2,
}


# ------------------------------------------------------------------------------------------ measuring
class Clock:
    """Wall time and counts of the instrumented calls (``generate``, the judge), read per step."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.seconds = {"rollout": 0.0, "judge": 0.0}
        self.counts = {"generated_tokens": 0, "judge_calls": 0}

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def measure(self, key: str) -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[key] += time.perf_counter() - start

    def snapshot(self) -> dict[str, float]:
        return {**self.seconds, **self.counts}


def time_generate(model: Any, clock: Clock, pad_id: int) -> None:
    """Wrap this model instance's ``generate`` so every rollout's time and new tokens are counted."""
    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        prompt = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        with clock.measure("rollout"):
            out = original(*args, **kwargs)
        sequences = getattr(out, "sequences", out)
        clock.counts["generated_tokens"] += int((sequences[:, prompt.shape[1] :] != pad_id).sum())
        return out

    model.generate = generate


@dataclass
class StepTiming:
    step_s: float
    rollout_s: float
    judge_s: float
    train_s: float  # step - rollout - judge: log-probs, loss, backward, optimizer
    generated_tokens: int
    judge_calls: int


class StepTimer(TrainerCallback):
    """Splits each optimizer step into rollout / judge / the rest, from the clock's counters."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.steps: list[StepTiming] = []
        self.logs: list[dict[str, Any]] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.clock.sync()
        self._start, self._before = time.perf_counter(), self.clock.snapshot()

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.sync()
        step_s = time.perf_counter() - self._start
        delta = {k: v - self._before[k] for k, v in self.clock.snapshot().items()}
        self.steps.append(
            StepTiming(
                step_s=step_s,
                rollout_s=delta["rollout"],
                judge_s=delta["judge"],
                train_s=step_s - delta["rollout"] - delta["judge"],
                generated_tokens=int(delta["generated_tokens"]),
                judge_calls=int(delta["judge_calls"]),
            )
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def timed_judges(clock: Clock) -> tuple[type, type]:
    """The project's offline judges, timed: word overlap (RLMT) and likelihood pairwise (phase3)."""
    from trl_ext.judges import ReferenceOverlapJudge
    from trl_ext.judges.pairwise import LikelihoodPairwiseJudge

    class TimedOverlapJudge(ReferenceOverlapJudge):
        def judge(self, prefixes, candidates, references):
            with clock.measure("judge"):
                verdicts = super().judge(prefixes, candidates, references)
            clock.counts["judge_calls"] += len(verdicts)
            return verdicts

    class TimedLikelihoodJudge(LikelihoodPairwiseJudge):
        def judge_pairs(self, prefixes, options_1, options_2):
            with clock.measure("judge"):
                verdicts = super().judge_pairs(prefixes, options_1, options_2)
            clock.counts["judge_calls"] += len(verdicts)
            return verdicts

    return TimedOverlapJudge, TimedLikelihoodJudge


@contextlib.contextmanager
def gpu_peak(result: dict[str, Any], cuda: bool) -> Iterator[None]:
    """Record the allocator's peak (allocated and reserved) during the block into ``result``."""
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        if cuda:
            torch.cuda.synchronize()
            result["peak_gpu_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
            result["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        else:
            result["peak_gpu_allocated_gib"] = result["peak_gpu_reserved_gib"] = None


def summarise(steps: list[StepTiming]) -> dict[str, float]:
    """Mean over the steps after the first (warm-up), or the only step."""
    steady = steps[1:] or steps
    return {key: statistics.fmean(getattr(s, key) for s in steady) for key in asdict(steady[0])}


# ------------------------------------------------------------------------------------------ inputs
def build_random_model(config_path: Path, tokenizer_dir: Path, out_dir: Path, tiny: bool, seed: int) -> dict:
    """Save a seeded random model of the shipped architecture plus a base-model tokenizer to ``out_dir``."""
    try:
        fields = {k: v for k, v in json.loads(config_path.read_text()).items() if not k.startswith("_")}
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"error: --config {config_path}: {err}") from None
    if tiny:
        fields.update(TINY_ARCHITECTURE)
    config = AutoConfig.for_model(**fields)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.eos_token = tokenizer.pad_token = ENDOFTEXT
    if len(tokenizer) > config.vocab_size:
        raise SystemExit(f"error: tokenizer has {len(tokenizer)} tokens, the config's vocab_size is smaller")
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    end = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    model.generation_config = GenerationConfig(bos_token_id=end, eos_token_id=end, pad_token_id=end)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    parameters = sum(p.numel() for p in model.parameters())
    info = {
        "config": str(config_path),
        "tiny": tiny,
        "parameters": parameters,
        "non_embedding_parameters": parameters - model.get_input_embeddings().weight.numel(),
        "architecture": {k: fields[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                "num_key_value_heads", "head_dim", "intermediate_size",
                                                "vocab_size", "tie_word_embeddings")},
    }  # fmt: skip
    del model
    return info


def corpus_token_docs(tokenizer: Any, corpus_path: Path, min_tokens: int, n: int) -> list[list[int]]:
    """Token ids of the first ``n`` documents with at least ``min_tokens`` tokens (cycled if fewer)."""
    docs = []
    with corpus_path.open(encoding="utf-8") as fh:
        for line in fh:
            ids = tokenizer.encode(json.loads(line)["text"], add_special_tokens=False)
            if len(ids) >= min_tokens:
                docs.append(ids)
            if len(docs) == n:
                break
    if not docs:
        raise SystemExit(f"error: {corpus_path}: no document with {min_tokens} tokens")
    return [docs[i % len(docs)] for i in range(n)]


def train_timed(build: Callable[[], Any], result: dict[str, Any], clock: Clock, cuda: bool) -> dict[str, Any]:
    """Build a trainer and train it under the step timer and the peak-memory meter; add what was measured."""
    timer = StepTimer(clock)
    with gpu_peak(result, cuda):
        trainer = build()
        trainer.add_callback(timer)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    result |= precision_of(trainer)
    result |= {"steps": [asdict(s) for s in timer.steps], "steady": summarise(timer.steps),
               "last_log": timer.logs[-1] if timer.logs else {}}  # fmt: skip
    return result


def precision_of(trainer: Any) -> dict[str, str | None]:
    """The dtypes the trainer really holds after its steps: parameters and AdamW state."""
    params = {str(p.dtype) for p in trainer.model.parameters() if p.requires_grad}
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    states = {
        str(v.dtype) for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.ndim
    }
    return {
        "param_dtype": ",".join(sorted(params)) or None,
        "optimizer_state_dtype": ",".join(sorted(states)) or None,
        "bf16_autocast": bool(trainer.args.bf16),
    }


def common_args(out_dir: Path, cuda: bool, steps: int, seed: int) -> dict[str, Any]:
    return {
        "output_dir": str(out_dir),
        "max_steps": steps,
        "bf16": cuda,
        "use_cpu": not cuda,
        "seed": seed,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": False,  # as every arm's YAML (TRL's own default is True)
    }


# ------------------------------------------------------------------------------------------ sections
def run_rlmt(model_dir: Path, tokenizer: Any, docs: list[list[int]], shapes: Shapes, steps: int,
             work: Path, cuda: bool, seed: int) -> dict[str, Any]:  # fmt: skip
    from datasets import Dataset

    from trl_ext.trainers.grpo import ThinkingGRPOConfig, ThinkingGRPOTrainer

    rows = []
    for i, ids in enumerate(docs[: shapes.rlmt_prefixes * steps]):
        prefix = tokenizer.decode(ids[: shapes.rlmt_prompt_tokens])
        reference = tokenizer.decode(ids[shapes.rlmt_prompt_tokens : shapes.rlmt_prompt_tokens + 128])
        rows.append(
            {"id": f"doc{i}", "prompt": prefix + " <think>", "prefix": prefix, "reference": reference}
        )
    clock = Clock(cuda)
    overlap_judge, _ = timed_judges(clock)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    time_generate(model, clock, tokenizer.pad_token_id)
    args = ThinkingGRPOConfig(
        **common_args(work / "rlmt", cuda, steps, seed),
        num_generations=shapes.k,
        prefixes_per_step=shapes.rlmt_prefixes,
        per_device_train_batch_size=shapes.rlmt_micro_batch,
        think_max_tokens=shapes.think_tokens,
        suffix_max_tokens=shapes.suffix_tokens,
        beta=0.02,
        log_rollout_samples=False,
    )
    result: dict[str, Any] = {
        "trainer": "ThinkingGRPOTrainer",
        "shape": f"{shapes.rlmt_prefixes} prefixes x K={shapes.k}, prompt ~{shapes.rlmt_prompt_tokens} tok, "
        f"thought <={shapes.think_tokens} + suffix <={shapes.suffix_tokens}, beta 0.02",
        "samples_per_step": shapes.rlmt_prefixes * shapes.k,
        "judge": "offline word overlap (ReferenceOverlapJudge)",
    }

    def build() -> Any:
        return ThinkingGRPOTrainer(
            model=model,
            reward_funcs=[overlap_judge(threshold=0.1)],
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )

    return train_timed(build, result, clock, cuda)


def run_phase3(model_dir: Path, tokenizer: Any, docs: list[list[int]], shapes: Shapes, steps: int,
               work: Path, cuda: bool, seed: int) -> dict[str, Any]:  # fmt: skip
    from datasets import Dataset

    from trl_ext.trainers.online_dpo import SelfImprovingOnlineDPOConfig, SelfImprovingOnlineDPOTrainer

    p, n = shapes.phase3_prompt_tokens, shapes.phase3_new_tokens
    rows = [{"id": f"doc{i}", "prefix_ids": ids[:p], "suffix_ids": ids[p : p + n]}
            for i, ids in enumerate(docs[: shapes.phase3_prefixes * steps])]  # fmt: skip
    clock = Clock(cuda)
    _, likelihood_judge = timed_judges(clock)
    device = "cuda" if cuda else "cpu"
    # The offline judge's scorer: a frozen bf16 copy on the same GPU (a real run's judge is an LLM server).
    scorer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    judge = likelihood_judge(scorer.to(device), tokenizer, max_prefix_tokens=p)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    time_generate(model, clock, tokenizer.pad_token_id)
    args = SelfImprovingOnlineDPOConfig(
        **common_args(work / "phase3", cuda, steps, seed),
        num_rollouts=shapes.k,
        per_device_train_batch_size=shapes.phase3_micro_batch,
        gradient_accumulation_steps=shapes.phase3_prefixes // shapes.phase3_micro_batch,
        max_new_tokens=n,
        metrics_json=False,
    )
    pool = shapes.k + 1
    result: dict[str, Any] = {
        "trainer": "SelfImprovingOnlineDPOTrainer",
        "shape": f"{shapes.phase3_prefixes} prefixes ({shapes.phase3_micro_batch} x accumulation "
        f"{shapes.phase3_prefixes // shapes.phase3_micro_batch}) x (pivot + K={shapes.k}), prompt {p} tok, "
        f"{n} new tok, full pairwise",
        "prefixes_per_step": shapes.phase3_prefixes,
        "expected_judge_calls_per_step": shapes.phase3_prefixes * pool * (pool - 1) // 2,
        "judge": "offline likelihood pairwise judge (frozen copy of the model on the same device)",
        "judge_model_gib": sum(t.numel() * t.element_size() for t in scorer.parameters()) / 2**30,
    }

    def build() -> Any:
        return SelfImprovingOnlineDPOTrainer(
            model=model,
            reward_funcs=judge,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )

    return train_timed(build, result, clock, cuda)


def run_sft(model_dir: Path, tokenizer: Any, docs: list[list[int]], shapes: Shapes, steps: int,
            work: Path, cuda: bool, seed: int) -> dict[str, Any]:  # fmt: skip
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [{"input_ids": ids[: shapes.sft_tokens]} for ids in docs[: shapes.sft_sequences * steps]]
    clock = Clock(cuda)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = SFTConfig(
        **common_args(work / "sft", cuda, steps, seed),
        per_device_train_batch_size=shapes.sft_micro_batch,
        gradient_accumulation_steps=shapes.sft_sequences // shapes.sft_micro_batch,
        max_length=1024,
        learning_rate=5e-6,
    )
    result: dict[str, Any] = {
        "trainer": "trl.SFTTrainer",
        "shape": f"{shapes.sft_sequences} sequences ({shapes.sft_micro_batch} x accumulation "
        f"{shapes.sft_sequences // shapes.sft_micro_batch}) x {shapes.sft_tokens} tokens",
        "tokens_per_step": shapes.sft_sequences * shapes.sft_tokens,
    }

    def build() -> Any:
        return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                           processing_class=tokenizer)  # fmt: skip

    return train_timed(build, result, clock, cuda)


def run_decode(model_dir: Path, tokenizer: Any, docs: list[list[int]], shapes: Shapes, repeats: int,
               cuda: bool, seed: int) -> dict[str, Any]:  # fmt: skip
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    prompts = torch.tensor([ids[: shapes.decode_prompt_tokens] for ids in docs[: shapes.decode_batch]],
                           device=device)  # fmt: skip
    new = shapes.decode_new_tokens

    def config(tokens: int) -> GenerationConfig:
        # Every row samples exactly `tokens` tokens (EOS cannot end a row early): tokens = batch x tokens.
        return GenerationConfig(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True, top_p=0.95,
                                temperature=1.0, top_k=0, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id, use_cache=True)  # fmt: skip

    clock = Clock(cuda)
    result: dict[str, Any] = {
        "shape": f"batch {shapes.decode_batch}, prompt {shapes.decode_prompt_tokens} tok, {new} new tok, "
        f"{str(dtype).removeprefix('torch.')} weights, KV cache",
        "weights_dtype": str(dtype),
    }
    torch.manual_seed(seed)
    with torch.no_grad():
        model.generate(input_ids=prompts, generation_config=config(4))  # warm-up (kernels, allocator)
        runs = []
        with gpu_peak(result, cuda):
            for _ in range(repeats):
                before = clock.seconds["rollout"]
                with clock.measure("rollout"):
                    out = model.generate(input_ids=prompts, generation_config=config(new))
                tokens = (out.shape[1] - prompts.shape[1]) * out.shape[0]
                runs.append({"seconds": clock.seconds["rollout"] - before, "tokens": tokens})
    result["runs"] = runs
    result["tokens_per_s"] = statistics.median(r["tokens"] / r["seconds"] for r in runs)
    return result


# ------------------------------------------------------------------------------------------ report
def table_rows(report: dict[str, Any]) -> list[list[str]]:
    def num(value: Any, digits: int = 2) -> str:
        return (
            "-"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else f"{value:.{digits}f}"
        )

    rows = []
    sections = report["sections"]
    for name in ("rlmt", "phase3", "sft"):
        if name not in sections:
            continue
        s = sections[name]
        steady = s["steady"]
        if name == "sft":
            tok_s, kind = s["tokens_per_step"] / steady["step_s"], "trained"
        else:
            tok_s = steady["generated_tokens"] / steady["rollout_s"] if steady["rollout_s"] else math.nan
            kind = "generated"
        times = [num(steady[key]) for key in ("step_s", "rollout_s", "judge_s", "train_s")]
        calls = str(int(steady["judge_calls"]))
        rows.append(
            [name, s["shape"], *times, f"{num(tok_s, 0)} {kind}", calls, num(s["peak_gpu_allocated_gib"])]
        )
    if "decode" in sections:
        d = sections["decode"]
        rows.append(["decode", d["shape"], "-", "-", "-", "-", f"{num(d['tokens_per_s'], 0)} generated", "-",
                     num(d["peak_gpu_allocated_gib"])])  # fmt: skip
    return rows


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (
        f"gpu-check ({report['mode']}, {report['device']}, {report['model']['parameters'] / 1e6:.1f}M params)"
    )
    table = Table(title=title)
    for column in ("section", "shape", "s/step", "rollout s", "judge s", "train s", "tokens/s", "judge calls",
                   "peak GPU GiB"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("section", "shape") else "right")
    for row in table_rows(report):
        table.add_row(*row)
    console = Console(width=240)
    console.print(table)
    console.print(
        "s/step: mean over optimizer steps after the first (warm-up); train s = step - rollout - judge "
        "(log-probs, loss, backward, optimizer); tokens/s: generated tokens per rollout second (rlmt, "
        "phase3), trained tokens per step second (sft), decode at fixed batch; judge calls per optimizer "
        "step; offline judges, so judge s is not an LLM judge's cost."
    )
    for name in ("rlmt", "phase3", "sft"):
        if name in report["sections"]:
            s = report["sections"][name]
            console.print(f"{name}: params {s['param_dtype']}, optimizer state {s['optimizer_state_dtype']}, "
                          f"bf16 autocast {s['bf16_autocast']}")  # fmt: skip
    console.print(f"total {report['total_s']:.0f} s; JSON: {report['out']}")


# ------------------------------------------------------------------------------------------ main
@dataclass
class CheckArgs:
    tiny: bool = False
    out: Path | None = None
    config: Path = CONFIG_PATH
    tokenizer: Path | None = None
    corpus: Path | None = None
    sections: list[str] = field(default_factory=lambda: ["rlmt", "phase3", "sft", "decode"])
    rlmt_steps: int = 3
    phase3_steps: int = 2
    sft_steps: int = 2
    decode_repeats: int = 2
    seed: int = 0
    workdir: Path | None = None


def parse_args(argv: list[str] | None) -> CheckArgs:
    defaults = CheckArgs()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--tiny", action="store_true", help="CPU-sized: tiny model, tiny shapes (tests)")
    parser.add_argument("--out", type=Path, help="JSON report (default outputs/gpu_check/<full|tiny>.json)")
    parser.add_argument("--config", type=Path, default=defaults.config, help="model architecture JSON")
    parser.add_argument(
        "--tokenizer", type=Path, help="tokenizer dir (default: the embedded Qwen3 tokenizer)"
    )
    parser.add_argument("--corpus", type=Path, help="JSONL with a 'text' field (default: embedded corpus)")
    parser.add_argument("--sections", nargs="+", default=defaults.sections, choices=defaults.sections)
    parser.add_argument("--rlmt-steps", type=int, default=defaults.rlmt_steps)
    parser.add_argument("--phase3-steps", type=int, default=defaults.phase3_steps)
    parser.add_argument("--sft-steps", type=int, default=defaults.sft_steps)
    parser.add_argument("--decode-repeats", type=int, default=defaults.decode_repeats)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workdir", type=Path, help="where the random model and trainer outputs go (temp)")
    ns = parser.parse_args(argv)
    for name in ("rlmt_steps", "phase3_steps", "sft_steps", "decode_repeats"):
        if getattr(ns, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return CheckArgs(**vars(ns))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cuda = torch.cuda.is_available() and not args.tiny
    if not args.tiny and not cuda:
        raise SystemExit(
            "error: the full gpu-check needs a CUDA GPU (torch.cuda.is_available() is False); "
            "run `python bench/gpu_check.py --tiny` for the CPU-sized pipeline check"
        )
    if args.tokenizer is None or args.corpus is None:
        from trl_ext.assets import verify

        assets = verify(components=("tokenizer", "corpus"))  # checksummed; the check needs nothing else
        args.tokenizer = args.tokenizer or assets.tokenizer_dir
        args.corpus = args.corpus or assets.corpus_path
    import datasets
    import transformers
    import trl

    # A table, not a log: no progress bars, no per-step log dicts, and no RLMT stop alerts (a random-weight
    # model trips reward_collapsed / artifact_rate by construction; the alerts are tested elsewhere).
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    logging.getLogger("trl_ext").setLevel(logging.ERROR)
    shapes = TINY if args.tiny else REFERENCE
    out = args.out or Path("outputs") / "gpu_check" / f"{'tiny' if args.tiny else 'full'}.json"
    start = time.perf_counter()
    report: dict[str, Any] = {
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "tiny" if args.tiny else "full",
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"cpu ({platform.processor() or platform.machine()})",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },  # fmt: skip
        "shapes": asdict(shapes),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="gpu_check_", dir=args.workdir) as tmp:
        work = Path(tmp)
        model_dir = work / "model"
        report["model"] = build_random_model(args.config, args.tokenizer, model_dir, args.tiny, args.seed)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        longest = max(shapes.rlmt_prompt_tokens + 128, shapes.phase3_prompt_tokens + shapes.phase3_new_tokens,
                      shapes.sft_tokens, shapes.decode_prompt_tokens)  # fmt: skip
        needed = max(shapes.rlmt_prefixes * args.rlmt_steps, shapes.phase3_prefixes * args.phase3_steps,
                     shapes.sft_sequences * args.sft_steps, shapes.decode_batch)  # fmt: skip
        docs = corpus_token_docs(tokenizer, args.corpus, longest, needed)
        runners = {
            "rlmt": lambda: run_rlmt(
                model_dir, tokenizer, docs, shapes, args.rlmt_steps, work, cuda, args.seed
            ),
            "phase3": lambda: run_phase3(
                model_dir, tokenizer, docs, shapes, args.phase3_steps, work, cuda, args.seed
            ),  # fmt: skip
            "sft": lambda: run_sft(model_dir, tokenizer, docs, shapes, args.sft_steps, work, cuda, args.seed),
            "decode": lambda: run_decode(
                model_dir, tokenizer, docs, shapes, args.decode_repeats, cuda, args.seed
            ),
        }
        for name in args.sections:
            section_start = time.perf_counter()
            print(f"[gpu-check] {name} ...", flush=True)
            report["sections"][name] = runners[name]()
            report["sections"][name]["section_s"] = time.perf_counter() - section_start
            gc.collect()  # the section's trainer and models are unreachable now: free them before the next
            if cuda:
                torch.cuda.empty_cache()
    report["total_s"] = time.perf_counter() - start
    if not args.tiny:
        report["within_time_budget"] = report["total_s"] <= FULL_TIME_BUDGET_S
    report["out"] = str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    return report


if __name__ == "__main__":
    main()
