"""Shared machinery of the reward gate and the thought-use probe (docs/method.md §5, §7).

Both commands do the same four things per arm: take held-out RLMT prompts, sample thoughts and
suffixes with the trainer's own two-stage rollout (:func:`trl_ext.rollout.two_stage_generate`),
score each suffix with the same pointwise judge RLMT trains against (it sees prefix, reference and
suffix, never the thought), and append one JSONL row per sample so an interrupted run resumes
where it stopped. This module holds those pieces; the two commands hold their own aggregation.

Resume contract: a sample is identified by ``(arm, condition, prefix_id, sample_idx)``. A stored
row is reused when its ``prompt_sha`` matches the prompt this run would send; a mismatch (the rows
file changed under the same ``--out``) is an error, never a silent mix. The run configuration
that changes what is sampled (budgets, temperature, seed, judge) is stored in ``config.json`` and
a later run with different values is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trl_ext.data.rows import RowFileError, RowSchema, append_row, read_appended_rows, read_rows

logger = logging.getLogger(__name__)

DEFAULT_ROWS = "outputs/data/thinking/heldout.jsonl"
DEFAULT_SEED = 4337
THINK_CLOSE = "</think>"

SAMPLE_SCHEMA = RowSchema(
    name="thought-rollout sample",
    fields={
        "arm": str,
        "condition": str,
        "prefix_id": str,
        "sample_idx": int,
        "prompt_sha": str,
        "thought": str,
        "suffix": str,
        "thought_ids": list[int],
        "boundary_ids": list[int],
        "suffix_ids": list[int],
        "closed_by_model": bool,
        "thought_closed": bool,
        "new_tokens": int,
        "score": float | None,
        "judge_error": str | None,
    },
    optional={
        "stop_reason": str,
        "judge_raw": str | None,
        "thought_source": str | None,
        "judge_latency_s": float,
    },
)


# --------------------------------------------------------------------------------------- rows


def prompt_sha(prompt: str, reference: str) -> str:
    """What a stored sample was generated from and judged against (resume consistency check)."""
    return hashlib.sha256(f"{prompt}\x00{reference}".encode()).hexdigest()[:16]


def load_prompt_rows(path: str | Path, tokenizer: Any, split: str | None = None) -> tuple[list[dict], dict]:
    """RLMT rows (``prompt``/``prefix``/``reference``) from ``path``.

    ``path`` holds either RL rows (``trl_ext.data.rl_rows`` schema) or interleaved-thinking rows
    (``id``/``text``, e.g. the held-out partition ``outputs/data/thinking/heldout.jsonl``), which
    are turned into RL rows here with the same builder RLMT uses. Returns the rows and a report
    (rows read, rows kept, rejections by reason).
    """
    from trl_ext.data.rl_rows import RL_ROW_SCHEMA, THINKING_ROW_SCHEMA, build_rl_rows

    path = Path(path)
    if not path.exists():
        raise RowFileError(
            path, None, None, "file not found (give --rows: RL rows or held-out interleaved-thinking rows)"
        )
    first = _first_json_object(path)
    if "prompt" in first:
        rows = read_rows(path, RL_ROW_SCHEMA).rows
        report: dict[str, Any] = {"format": "rl_rows", "rows_in": len(rows)}
    elif "text" in first:
        thinking = read_rows(path, THINKING_ROW_SCHEMA).rows
        rows, built = build_rl_rows(thinking, tokenizer, source=str(path))
        report = {"format": "thinking_rows", **built.as_dict()}
        report.pop("rejections", None)
        if built.rejected:
            logger.info("%s: %d/%d rows do not qualify as RL rows: %s", path, built.rows_in - built.rows_out,
                        built.rows_in, dict(built.rejected))  # fmt: skip
    else:
        raise RowFileError(
            path, 1, "prompt", "neither an RL row (prompt/prefix/reference) nor a thinking row (text)"
        )
    for row in rows:
        if not row["prompt"].rstrip().endswith("<think>"):
            raise RowFileError(
                path, None, "prompt", f"row {row['id']!r}: the prompt must end inside an open ' <think>'"
            )
    if split is not None:
        rows = [r for r in rows if r.get("split") == split]
    if not rows:
        raise RowFileError(path, None, "split" if split else None, f"no usable RL rows (split={split!r})")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise RowFileError(path, None, "id", f"duplicate id {dup!r}: prefixes must be unique")
    report["rows_out"] = len(rows)
    return rows, report


def _first_json_object(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise RowFileError(path, line_no, None, f"invalid JSON: {err.msg}") from None
                if not isinstance(obj, dict):
                    raise RowFileError(path, line_no, None, "expected a JSON object")
                return obj
    raise RowFileError(path, None, None, "no rows (empty file)")


def select_prefixes(rows: Sequence[dict], num_prefixes: int, seed: int) -> list[dict]:
    """A seeded sample of ``num_prefixes`` rows, stable under reordering of the file (rows are
    sorted by id first). Fewer rows than asked: all of them, with a warning."""
    ordered = sorted(rows, key=lambda r: r["id"])
    if num_prefixes >= len(ordered):
        if num_prefixes > len(ordered):
            logger.warning(
                "asked for %d prefixes, only %d rows available: using all", num_prefixes, len(ordered)
            )
        chosen = ordered
    else:
        chosen = random.Random(seed).sample(ordered, num_prefixes)
    return sorted(chosen, key=lambda r: r["id"])


# --------------------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class ArmSpec:
    name: str
    model_dir: Path


def resolve_arms(specs: Sequence[str], outputs: str | Path, base_model: str | None = None) -> list[ArmSpec]:
    """``--arms`` entries: an arm name (``outputs/<arm>/final`` via :mod:`eval.arms`) or
    ``NAME=MODEL_DIR`` for any HF model directory."""
    from eval.arms import checkpoint_dir

    arms: list[ArmSpec] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not name:
            raise SystemExit(f"error: --arms entry {spec!r}: expected NAME or NAME=MODEL_DIR")
        model_dir = Path(path) if sep else checkpoint_dir(name, outputs, base_model)
        if not (model_dir / "config.json").is_file():
            raise SystemExit(f"error: --arms {spec!r}: {model_dir} is not a model directory (no config.json)")
        arms.append(ArmSpec(name, model_dir))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise SystemExit(f"error: --arms names must be unique, got {names}")
    return arms


def load_model(model_dir: Path, device: str = "auto", dtype: str = "auto"):
    """Model (eval mode) and tokenizer; bf16 on CUDA, fp32 on CPU unless told otherwise."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device)
    model.eval()
    return model, tokenizer


# --------------------------------------------------------------------------------------- judge


def add_judge_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "judge (the RLMT pointwise judge: prefix, reference, suffix; never the thought)"
    )
    group.add_argument(
        "--judge",
        default="auto",
        choices=["auto", "llm", "offline"],
        help="llm: an OpenAI-compatible judge at --judge-base-url; offline: word-overlap with the "
        "reference (pipeline check, NOT equivalent to the LLM judge); auto: llm when a URL is given",
    )
    group.add_argument("--judge-base-url", action="append", default=[], help="judge endpoint (repeatable)")
    group.add_argument("--judge-model", default="default", help="served model name of the judge")
    group.add_argument(
        "--judge-prompt", default="rlmt_reference_match", help="packaged template or file path"
    )
    group.add_argument("--judge-mode", default="chat", choices=["chat", "completion"], help="request type")
    group.add_argument("--judge-temperature", type=float, default=0.7, help="judge sampling (seed: 0.7)")
    group.add_argument("--judge-top-p", type=float, default=0.6, help="judge sampling (seed: 0.6)")
    group.add_argument("--judge-max-tokens", type=int, default=64, help="judge reply budget")
    group.add_argument("--judge-concurrency", type=int, default=32, help="judge requests in flight")
    group.add_argument("--judge-timeout", type=float, default=60.0, help="seconds per judge request")
    group.add_argument("--judge-retries", type=int, default=2, help="retries per failed judge request")
    group.add_argument(
        "--judge-no-thinking",
        action="store_true",
        help="send chat_template_kwargs.enable_thinking=false (Qwen3 judges)",
    )
    group.add_argument(
        "--offline-threshold", type=float, default=0.1, help="offline judge: word-F1 needed for a score of 1"
    )


def build_judge(args: argparse.Namespace, invalid_log_path: Path | None = None):
    """The pointwise judge and a description recorded in ``config.json`` / ``summary.json``."""
    from trl_ext.judges import LLMJudge, ReferenceOverlapJudge

    kind = args.judge
    if kind == "auto":
        kind = "llm" if args.judge_base_url else "offline"
    if kind == "llm":
        if not args.judge_base_url:
            raise SystemExit("error: --judge llm needs --judge-base-url URL (repeatable)")
        extra = {"chat_template_kwargs": {"enable_thinking": False}} if args.judge_no_thinking else None
        judge = LLMJudge.pointwise(
            base_url=list(args.judge_base_url), prompt=args.judge_prompt, model=args.judge_model,
            mode=args.judge_mode, temperature=args.judge_temperature, top_p=args.judge_top_p,
            max_tokens=args.judge_max_tokens, max_concurrency=args.judge_concurrency,
            timeout_s=args.judge_timeout, max_retries=args.judge_retries, request_extra=extra,
            invalid_log_path=invalid_log_path,
        )  # fmt: skip
        description = {
            "kind": "llm", "prompt": args.judge_prompt, "model": args.judge_model, "mode": args.judge_mode,
            "temperature": args.judge_temperature, "top_p": args.judge_top_p,
            "max_tokens": args.judge_max_tokens, "enable_thinking": not args.judge_no_thinking,
        }  # fmt: skip
    else:
        logger.warning(
            "offline judge (word overlap with the reference): checks the pipeline, is NOT equivalent "
            "to the LLM judge; report LLM-judge numbers as results"
        )
        judge = ReferenceOverlapJudge(threshold=args.offline_threshold)
        description = {"kind": "offline", "name": "reference_overlap", "threshold": args.offline_threshold}
    return judge, description


# --------------------------------------------------------------------------------------- shared CLI


def add_common_args(parser: argparse.ArgumentParser, *, num_prefixes: int, samples: int, out: str) -> None:
    """Flags shared by ``reward-gate`` and ``thought-probe``."""
    parser.add_argument(
        "--arms",
        nargs="+",
        required=True,
        help="arm names (outputs/<arm>/final; 'base' = the starting model) or NAME=MODEL_DIR",
    )
    parser.add_argument("--rows", default=DEFAULT_ROWS, help="held-out RL rows or interleaved-thinking rows")
    parser.add_argument("--split", default=None, help="keep only rows whose 'split' field equals this")
    parser.add_argument("--out", default=out, help="output folder (per-arm sample JSONL + summary.json)")
    parser.add_argument("--outputs", default="outputs", help="root of the arms' training outputs")
    parser.add_argument(
        "--base-model", default=None, help="model dir for arm 'base' (default: embedded tiny Qwen3)"
    )
    parser.add_argument("--num-prefixes", type=int, default=num_prefixes, help="held-out prefixes per arm")
    parser.add_argument("--samples", type=int, default=samples, help="samples per prefix (K)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="prefix selection and sampling seed")
    parser.add_argument("--think-max-tokens", type=int, default=48, help="stage-1 thought budget (RLMT)")
    parser.add_argument("--suffix-max-tokens", type=int, default=128, help="stage-2 suffix budget (RLMT)")
    parser.add_argument(
        "--boundary-text",
        default=THINK_CLOSE,
        help="inserted between thought and suffix, must start with </think> (the RLMT boundary_text)",
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="policy sampling temperature")
    parser.add_argument("--top-p", type=float, default=0.95, help="policy nucleus sampling")
    parser.add_argument("--batch-prefixes", type=int, default=4, help="prefixes per generate call (×K rows)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16"
    )
    parser.add_argument("--overwrite", action="store_true", help="delete stored samples and config first")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="recompute summary.json from stored samples; generate nothing",
    )
    parser.add_argument(
        "--rejudge-failed",
        action="store_true",
        help="re-judge stored samples whose judge call failed (transport errors), keeping their text",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_judge_args(parser)


def check_common_args(args: argparse.Namespace) -> None:
    for flag in ("num_prefixes", "samples", "think_max_tokens", "suffix_max_tokens", "batch_prefixes"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"error: --{flag.replace('_', '-')} must be ≥ 1, got {getattr(args, flag)}")
    if not args.boundary_text.startswith(THINK_CLOSE):
        raise SystemExit(
            f"error: --boundary-text must start with {THINK_CLOSE!r}, got {args.boundary_text!r}"
        )
    if not 0.0 < args.top_p <= 1.0:
        raise SystemExit(f"error: --top-p must be in (0, 1], got {args.top_p}")
    if args.temperature <= 0:
        raise SystemExit(f"error: --temperature must be > 0 (sampling), got {args.temperature}")


def generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"do_sample": True, "temperature": args.temperature, "top_p": args.top_p, "top_k": 0}


def sampling_config(args: argparse.Namespace, judge_description: Mapping, **extra: Any) -> dict:
    """What determines the samples; a resumed run must agree on all of it."""
    return {
        "rows": str(Path(args.rows).resolve()),
        "split": args.split,
        "num_prefixes": args.num_prefixes,
        "samples": args.samples,
        "seed": args.seed,
        "think_max_tokens": args.think_max_tokens,
        "suffix_max_tokens": args.suffix_max_tokens,
        "boundary_text": args.boundary_text,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "judge": dict(judge_description),
        **extra,
    }


def check_or_write_config(out: Path, config: Mapping, write: bool = True) -> None:
    """Refuse to resume into (or summarise) ``out`` with a different sampling configuration."""
    path = out / "config.json"
    if path.exists():
        stored = json.loads(path.read_text())
        diffs = {
            k: (stored.get(k), config.get(k))
            for k in set(stored) | set(config)
            if stored.get(k) != config.get(k)
        }
        if diffs:
            detail = "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in sorted(diffs.items()))
            raise SystemExit(
                f"error: {out} holds samples from a different configuration ({detail}). "
                "Use another --out, or --overwrite to delete them."
            )
        return
    if write:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def json_ready(value: Any) -> Any:
    """NaN (a mean over nothing) becomes ``null`` so ``summary.json`` is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def write_summary(out: Path, summary: Mapping) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(json_ready(summary), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def derive_seed(*parts: Any) -> int:
    """A reproducible 63-bit seed from any parts (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()[:8], "big") >> 1


# --------------------------------------------------------------------------------------- sample store


SampleKey = tuple[str, str, int]  # (condition, prefix_id, sample_idx)


class SampleStore:
    """Append-only per-arm JSONL; the last row of a key wins (re-judged rows are appended)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[SampleKey, dict] = {}
        for row in read_appended_rows(path, SAMPLE_SCHEMA):
            self.rows[(row["condition"], row["prefix_id"], row["sample_idx"])] = row

    def get(self, condition: str, prefix_id: str, sample_idx: int, sha: str) -> dict | None:
        row = self.rows.get((condition, prefix_id, sample_idx))
        if row is not None and row["prompt_sha"] != sha:
            raise SystemExit(
                f"error: {self.path}: stored sample {condition}/{prefix_id}/{sample_idx} was generated "
                f"from a different prompt or reference (prompt_sha {row['prompt_sha']} != {sha}); the rows "
                "file changed. Use another --out, or --overwrite."
            )
        return row

    def add(self, row: dict) -> None:
        append_row(self.path, row)
        self.rows[(row["condition"], row["prefix_id"], row["sample_idx"])] = row

    def select(self, condition: str, prefix_ids: Iterable[str] | None = None) -> list[dict]:
        wanted = None if prefix_ids is None else set(prefix_ids)
        return [
            row
            for (cond, pid, _), row in sorted(self.rows.items())
            if cond == condition and (wanted is None or pid in wanted)
        ]


def judge_into_rows(
    judge: Any, prefixes: Sequence[str], references: Sequence[str], rows: Sequence[dict]
) -> None:
    """Score each row's suffix (the judge never sees the thought) and store the verdict on it."""
    if not rows:
        return
    verdicts = judge.judge(list(prefixes), [r["suffix"] for r in rows], list(references))
    if len(verdicts) != len(rows):
        raise RuntimeError(f"judge returned {len(verdicts)} verdicts for {len(rows)} candidates")
    for row, verdict in zip(rows, verdicts):
        row["score"] = None if verdict.score is None else float(verdict.score)
        row["judge_error"] = verdict.error
        row["judge_raw"] = verdict.raw if verdict.score is None else None
        row["judge_latency_s"] = float(verdict.latency_s)


class JudgeWriter:
    """Judges batch i in a helper thread while the caller generates batch i+1 (judging is
    network-bound, generation compute-bound), and stores each batch's rows once judged, in order.

    Use as a context manager; leaving it waits for the last batch and re-raises a judge error.
    """

    def __init__(self, judge: Any, store: SampleStore):
        self.judge, self.store = judge, store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trl_ext-gate-judge")
        self._pending: Future | None = None
        self.stored = 0

    def _judge_and_store(self, prefixes: list[str], references: list[str], rows: list[dict]) -> None:
        judge_into_rows(self.judge, prefixes, references, rows)
        for row in rows:
            self.store.add(row)
        self.stored += len(rows)

    def submit(self, prefixes: Sequence[str], references: Sequence[str], rows: Sequence[dict]) -> None:
        self.wait()
        self._pending = self._executor.submit(
            self._judge_and_store, list(prefixes), list(references), list(rows)
        )

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __enter__(self) -> JudgeWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)


def rejudge_failed(store: SampleStore, judge: Any, rows_by_id: Mapping[str, dict]) -> int:
    """Re-judge stored samples whose judge *call* failed (not unparseable replies: those are the
    judge's answer and stay invalid). Returns how many were re-judged."""
    failed = [
        dict(row)
        for row in store.rows.values()
        if row["score"] is None
        and (row["judge_error"] or "").startswith("call_failed")
        and row["prefix_id"] in rows_by_id
    ]
    if not failed:
        return 0
    judge_into_rows(
        judge, [rows_by_id[r["prefix_id"]]["prefix"] for r in failed],
        [rows_by_id[r["prefix_id"]]["reference"] for r in failed], failed,
    )  # fmt: skip
    for row in failed:
        store.add(row)
    return len(failed)


def sample_row(
    arm: str, condition: str, prefix_id: str, sample_idx: int, sha: str, *, thought: str, suffix: str,
    thought_ids: list[int], boundary_ids: list[int], suffix_ids: list[int], closed_by_model: bool,
    close_id: int, stop_reason: str | None = None, thought_source: str | None = None,
) -> dict:  # fmt: skip
    """One unjudged sample row (``score``/``judge_error`` are filled by :func:`judge_into_rows`)."""
    sampled = len(suffix_ids) + (len(thought_ids) if condition_samples_thought(condition) else 0)
    row = {
        "arm": arm, "condition": condition, "prefix_id": prefix_id, "sample_idx": sample_idx,
        "prompt_sha": sha, "thought": thought, "suffix": suffix, "thought_ids": list(thought_ids),
        "boundary_ids": list(boundary_ids), "suffix_ids": list(suffix_ids),
        "closed_by_model": closed_by_model,
        # Closed = a </think> sits between thought and suffix, sampled or inserted (always, two-stage).
        "thought_closed": closed_by_model or boundary_ids[:1] == [close_id],
        "new_tokens": sampled, "score": None, "judge_error": "not judged",
    }  # fmt: skip
    if stop_reason is not None:
        row["stop_reason"] = stop_reason
    if thought_source is not None:
        row["thought_source"] = thought_source
    return row


def condition_samples_thought(condition: str) -> bool:
    """Whether the policy sampled the thought (counts towards new tokens) in this condition."""
    return condition in ("two_stage", "normal_model_thought")


def progress(total: int, desc: str, args: argparse.Namespace):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=args.no_progress)


def free_memory() -> None:
    """Collect a dropped arm model before the next arm loads (matters on a GPU with several arms)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def batched(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
