"""Teacher augmentation: raw 512-token chunks → the same text with 3–6 inserted ``<think>`` thoughts.

``python -m trl_ext.data.augment --input examples.jsonl --output augmented.jsonl --base_urls URL``
asks an OpenAI-compatible teacher (SGLang, vLLM, any hosted API) for every row, normalises the
tag families it uses, validates the result (docs/method.md §3) and appends each finished row, one at a
time and fsynced, either to the output file or to the rejects file with the reason. Re-running the
same command resumes: ids already in either file are skipped, a line torn by a kill is cut off and
redone, and rows that failed only because the server was unreachable are retried. A kill at any
point therefore loses nothing and duplicates nothing.

``--teacher offline`` replaces the teacher with :class:`OfflineRuleAugmenter`, a deterministic rule
for runs with no server (the CPU demo, tests). Its rows say so in ``augmenter``, ``teacher_model``
and ``teacher_backend``; they exercise the pipeline but are not teacher data.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from trl_ext.data.markup import (
    THINK_CLOSE,
    THINK_OPEN,
    count_thoughts,
    markup_issues,
    normalise_tags,
    parse_thinking,
    thought_word_counts,
    unknown_tags,
    word_coverage,
)
from trl_ext.data.rows import RowFileError, RowSchema, append_row, read_appended_rows, read_rows, write_rows

OFFLINE_AUGMENTER = "offline_rule_v1"
RAW_TEXT_PLACEHOLDER = "{{RAW_TEXT}}"

AUGMENTED_SCHEMA = RowSchema(
    name="augmented thinking",
    fields={
        "id": str,
        "source_sha": str,
        "raw_chunk_ids": list[int],
        "interleaved_thinking_ids": list[int],
        "raw_text": str,
        "augmented_text": str,
        # the same string under the generic name that RL-row building and the thought-use probe read
        "text": str,
        "teacher_model": str,
        "teacher_backend": str,
        "augmenter": str,
        "prompt_version": str,
        "chunk_tokens": int,
        "max_augmented_tokens": int,
        "think_count": int,
        "raw_word_coverage": float,
    },
    optional={
        "source_id": str,
        "split": str,
        "partition": str,
        "truncated": bool,
        "attempts": int,
        "prefix_tokens": int,
    },
)
REJECT_SCHEMA = RowSchema(
    name="augmentation reject",
    fields={"id": str, "reason": str, "detail": str, "retryable": bool},
    optional={
        "source_sha": str,
        "attempts": int,
        "attempt_reasons": list[str],
        "teacher_model": str,
        "prompt_version": str,
        "reply_excerpt": str | None,
    },
)


# --------------------------------------------------------------------------- prompt


@dataclass(frozen=True)
class TeacherPrompt:
    """A system/user template; ``version`` = name + content hash, so an edited prompt is a new version."""

    name: str
    system: str
    user: str
    version: str

    def messages(self, raw_text: str) -> list[dict]:
        # str.replace, not str.format: passages contain braces (a reference-run bug filled
        # "{{...}}" templates with .replace but wrote them for .format).
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.replace(RAW_TEXT_PLACEHOLDER, raw_text)},
        ]


def load_prompt(name_or_path: str) -> TeacherPrompt:
    """Load a packaged prompt by name (``interleaved_thinking_v1``) or a template file by path."""
    path = Path(name_or_path)
    if path.suffix and path.exists():
        text, name = path.read_text(encoding="utf-8"), path.stem
    else:
        package = resources.files("trl_ext.data.prompts")
        candidate = package / f"{name_or_path}.txt"
        if not candidate.is_file():
            available = sorted(p.name[:-4] for p in package.iterdir() if p.name.endswith(".txt"))
            raise FileNotFoundError(
                f"teacher prompt {name_or_path!r} not found (packaged: {available}; or a path)"
            )
        text, name = candidate.read_text(encoding="utf-8"), name_or_path
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        header = line.strip()
        if header in ("[system]", "[user]"):
            current = header[1:-1]
            sections[current] = []
        elif current is None:
            if header and not header.startswith("#"):
                raise ValueError(f"{name_or_path}:{line_no}: text before the first [system]/[user] section")
        else:
            sections[current].append(line)
    if "user" not in sections:
        raise ValueError(f"{name_or_path}: missing the [user] section")
    user = "\n".join(sections["user"]).strip("\n")
    if user.count(RAW_TEXT_PLACEHOLDER) != 1:
        raise ValueError(
            f"{name_or_path}: the [user] section must contain {RAW_TEXT_PLACEHOLDER} exactly once"
        )
    system = "\n".join(sections.get("system", [])).strip("\n")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return TeacherPrompt(name=name, system=system, user=user, version=f"{name}@{digest}")


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class AugmentLimits:
    """The acceptance rule of docs/method.md §3."""

    min_thoughts: int = 3
    max_thoughts: int = 6
    min_word_coverage: float = 0.60
    max_augmented_tokens: int = 768
    min_augmented_tokens: int = 32


class Rejected(Exception):
    """A teacher reply that fails validation; ``reason`` is a stable key, ``detail`` is for humans."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```", re.DOTALL)


def extract_augmented_text(reply: str) -> str:
    """The augmented passage inside a reply.

    A reply with exactly one fenced block is reduced to the block (chatty teachers wrap the answer
    in "Here it is: ```...```"); a JSON object's ``augmented_text`` field is accepted.
    """
    text = reply.strip()
    fenced = _FENCE_RE.findall(text)
    if len(fenced) == 1:
        text = fenced[0].strip()
    if text.startswith("{"):
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(payload, dict) and isinstance(payload.get("augmented_text"), str):
            return payload["augmented_text"].strip()
    return text


def _think_ids(tokenizer) -> tuple[int, int]:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in (THINK_OPEN, THINK_CLOSE)]
    unk = getattr(tokenizer, "unk_token_id", None)
    if any(i is None or i == unk for i in ids):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')} has no single-token "
            f"{THINK_OPEN}/{THINK_CLOSE}; add them as tokens (tokenizer.add_tokens) before augmenting"
        )
    return ids[0], ids[1]


def build_augmented(raw_text: str, reply: str, tokenizer, limits: AugmentLimits) -> dict:
    """Validate one teacher reply; return the row's augmented fields or raise :class:`Rejected`.

    Order: extract → unknown tags → normalise → balance → empty thoughts → count → coverage →
    encode and truncate to ``max_augmented_tokens`` (a thought cut open by the truncation is
    dropped whole) → count and length again. Coverage is measured before truncation: it scores the
    teacher's faithfulness, while truncation only shortens the tail.
    """
    text = extract_augmented_text(reply)
    if not text.strip():
        raise Rejected("empty_reply")
    invented = unknown_tags(text, raw_text)
    if invented:
        raise Rejected("unknown_tags", ", ".join(f"<{t}>" for t in invented))
    text = normalise_tags(text)
    issues = markup_issues(text)
    if issues:
        raise Rejected("unbalanced_tags", f"{issues[0].kind} at character {issues[0].offset}")
    if any(s.kind == "thought" and not s.text.strip() for s in parse_thinking(text)):
        raise Rejected("empty_thought")
    n = count_thoughts(text)
    if n < limits.min_thoughts:
        raise Rejected("too_few_thoughts", f"{n} < {limits.min_thoughts}")
    if n > limits.max_thoughts:
        raise Rejected("too_many_thoughts", f"{n} > {limits.max_thoughts}")
    coverage = word_coverage(raw_text, text)
    if coverage < limits.min_word_coverage:
        raise Rejected("low_coverage", f"{coverage:.3f} < {limits.min_word_coverage}")

    open_id, close_id = _think_ids(tokenizer)
    ids = tokenizer.encode(text, add_special_tokens=False)
    truncated = len(ids) > limits.max_augmented_tokens
    if truncated:
        ids = ids[: limits.max_augmented_tokens]
        last_open = max((i for i, t in enumerate(ids) if t == open_id), default=-1)
        if last_open >= 0 and close_id not in ids[last_open:]:
            ids = ids[:last_open]
    augmented_text = tokenizer.decode(ids)  # the stored text is the decoding of the stored ids
    n_kept = count_thoughts(augmented_text)
    if n_kept < limits.min_thoughts:
        raise Rejected("too_few_thoughts_after_truncation", f"{n_kept} < {limits.min_thoughts}")
    if len(ids) < limits.min_augmented_tokens:
        raise Rejected("too_short", f"{len(ids)} < {limits.min_augmented_tokens} tokens")
    return {
        "interleaved_thinking_ids": ids,
        "augmented_text": augmented_text,
        "think_count": n_kept,
        "raw_word_coverage": round(coverage, 6),
        "truncated": truncated,
    }


# --------------------------------------------------------------------------- augmenters


@dataclass
class Reply:
    """One augmenter answer: ``text`` is None exactly when the teacher could not be reached."""

    text: str | None
    error: str | None = None


class Augmenter(Protocol):
    model: str
    backend: str
    kind: str
    prompt_version: str

    async def augment(self, raw_text: str, row_id: str, attempt: int) -> Reply: ...


class TeacherAugmenter:
    """An instruct model over the OpenAI-compatible chat API (``trl_ext.client``)."""

    kind = "teacher"
    backend = "openai_compatible"

    def __init__(self, client, prompt: TeacherPrompt, sampling: dict[str, Any], max_tokens: int):
        self.client, self.prompt, self.sampling, self.max_tokens = client, prompt, sampling, max_tokens
        self.model = client.model
        self.prompt_version = prompt.version

    async def augment(self, raw_text: str, row_id: str, attempt: int) -> Reply:
        result = await self.client.chat(
            self.prompt.messages(raw_text), max_tokens=self.max_tokens, **self.sampling
        )
        if not result.ok:
            return Reply(None, error=result.error)
        return Reply(result.text)


_SENTENCE_END_RE = re.compile(r"(?<=[.!?;:])\s+")
_STOPWORDS = frozenset(
    "that this with from have were which their there they them been would could about into when then than "
    "what will your also more some such only other these those very said each just most over after before "
    "where while upon shall because being does done make made much many must even still here".split()
)


class OfflineRuleAugmenter:
    """Deterministic stand-in for a teacher, for runs with no server. Rule ``offline_rule_v1``:

    1. Candidate insertion points are sentence ends (``.!?;:`` followed by whitespace); with fewer
       than three, every word boundary is a candidate.
    2. ``k = clamp(round(sentences / 4), 3, 6)`` thoughts go at evenly spaced candidates.
    3. Each thought recaps the span since the previous thought: ``So far: w1, w2, w3.`` with its
       (up to) three most frequent content words (≥ 4 letters, not stopwords, first occurrence
       breaks ties) — extractive, so no knowledge is invented.

    The output goes through the same validation as a teacher reply.
    """

    kind = OFFLINE_AUGMENTER
    backend = "offline"
    model = f"offline:{OFFLINE_AUGMENTER}"
    prompt_version = OFFLINE_AUGMENTER

    def insert_thoughts(self, raw_text: str) -> str:
        points = [m.start() for m in _SENTENCE_END_RE.finditer(raw_text)]
        n_sentences = len(points) + 1
        if len(points) < 3:
            points = [m.start() for m in re.finditer(r"\s+", raw_text)]
        if not points:
            return raw_text
        k = min(max(round(n_sentences / 4), 3), 6, len(points))
        chosen = sorted(
            {points[min(len(points) - 1, round((j + 1) * len(points) / (k + 1)))] for j in range(k)}
        )
        out, prev = [], 0
        for pos in chosen:
            span = raw_text[prev:pos]
            out.append(span)
            out.append(f"{THINK_OPEN}{self._recap(span)}{THINK_CLOSE}")
            prev = pos
        out.append(raw_text[prev:])
        return "".join(out)

    @staticmethod
    def _recap(span: str) -> str:
        words = [w.lower() for w in re.findall(r"[A-Za-z]{4,}", span) if w.lower() not in _STOPWORDS]
        top = [w for w, _ in Counter(words).most_common(3)]
        return "So far: " + (", ".join(top) if top else "no new terms") + "."

    async def augment(self, raw_text: str, row_id: str, attempt: int) -> Reply:
        return Reply(self.insert_thoughts(raw_text))


# --------------------------------------------------------------------------- the job


@dataclass
class AugmentSummary:
    """What a run did; written next to the output as ``*.summary.json``."""

    input_rows: int = 0
    already_done: int = 0
    retried_after_teacher_error: int = 0
    processed: int = 0
    accepted: int = 0
    rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    teacher_requests: int = 0
    elapsed_s: float = 0.0
    output_rows_total: int = 0
    thoughts_per_row_mean: float | None = None
    thought_words_median: float | None = None
    raw_word_coverage_mean: float | None = None
    truncated_rows: int = 0


def raw_chunk(row: dict, tokenizer, chunk_tokens: int) -> tuple[list[int], str]:
    """``(prefix_ids + suffix_ids)[:chunk_tokens]`` and its decoding (docs/method.md §3)."""
    ids = (row["prefix_ids"] + row["suffix_ids"])[:chunk_tokens]
    return ids, tokenizer.decode(ids, skip_special_tokens=True)


def _resume_state(
    output: Path, rejects: Path, augmenter: Augmenter, chunk_tokens: int
) -> tuple[set[str], int]:
    """Ids finished in a previous run; drops retryable rejects (teacher unreachable) so they are redone."""
    done_rows = read_appended_rows(output, AUGMENTED_SCHEMA)
    for line, row in enumerate(done_rows, start=1):
        mismatch = [
            (key, row[key], want)
            for key, want in (
                ("prompt_version", augmenter.prompt_version),
                ("teacher_model", augmenter.model),
                ("chunk_tokens", chunk_tokens),
            )
            if row[key] != want
        ]
        if mismatch:
            key, have, want = mismatch[0]
            raise RowFileError(
                output,
                line,
                key,
                f"existing row has {have!r} but this run uses {want!r}; write to a new --output",
            )
    rejects_rows = read_appended_rows(rejects, REJECT_SCHEMA)
    final = [r for r in rejects_rows if not r["retryable"]]
    retry = len(rejects_rows) - len(final)
    if retry:
        write_rows(rejects, final)  # atomic: a kill here leaves either the old or the new file
    done = {r["id"] for r in done_rows} | {r["id"] for r in final}
    return done, retry


async def augment_file(
    input_rows: Sequence[dict],
    output: Path,
    rejects: Path,
    augmenter: Augmenter,
    tokenizer,
    limits: AugmentLimits = AugmentLimits(),
    chunk_tokens: int = 512,
    attempts: int = 3,
    workers: int = 32,
    progress: bool = True,
) -> AugmentSummary:
    """Augment every row not finished yet, appending to ``output`` / ``rejects`` as rows finish."""
    ids = [r["id"] for r in input_rows]
    dupes = [i for i, c in Counter(ids).items() if c > 1]
    if dupes:
        raise ValueError(f"input has duplicate ids, e.g. {dupes[0]!r}: resume would be ambiguous")
    done, retried = _resume_state(output, rejects, augmenter, chunk_tokens)
    todo = [r for r in input_rows if r["id"] not in done]
    summary = AugmentSummary(input_rows=len(input_rows), already_done=len(input_rows) - len(todo))
    summary.retried_after_teacher_error = retried
    reasons: Counter = Counter()
    start = time.perf_counter()
    queue: asyncio.Queue = asyncio.Queue()
    for row in todo:
        queue.put_nowait(row)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="augment", unit="row", disable=not progress)

    async def handle(row: dict) -> None:
        raw_ids, raw_text = raw_chunk(row, tokenizer, chunk_tokens)
        attempt_reasons: list[str] = []
        reply_text: str | None = None
        for attempt in range(1, attempts + 1):
            summary.teacher_requests += 1
            reply = await augmenter.augment(raw_text, row["id"], attempt)
            if reply.text is None:  # the client already retried; the server is down, not the data bad
                _reject(row, "teacher_error", reply.error or "no reply", True, attempt, attempt_reasons, None)
                return
            reply_text = reply.text
            try:
                fields = build_augmented(raw_text, reply.text, tokenizer, limits)
            except Rejected as err:
                attempt_reasons.append(str(err))
                continue
            append_row(
                output, _output_row(row, raw_ids, raw_text, fields, augmenter, chunk_tokens, limits, attempt)
            )
            summary.accepted += 1
            return
        last = attempt_reasons[-1]
        reason, _, detail = last.partition(": ")
        _reject(row, reason, detail, False, attempts, attempt_reasons, reply_text)

    def _reject(row, reason, detail, retryable, n_attempts, attempt_reasons, reply_text) -> None:
        append_row(
            rejects,
            {
                "id": row["id"],
                "source_sha": row["source_sha"],
                "reason": reason,
                "detail": detail,
                "retryable": retryable,
                "attempts": n_attempts,
                "attempt_reasons": attempt_reasons,
                "teacher_model": augmenter.model,
                "prompt_version": augmenter.prompt_version,
                "reply_excerpt": None if reply_text is None else reply_text[:300],
            },
        )
        summary.rejected += 1
        reasons[reason] += 1

    async def worker() -> None:
        while True:
            try:
                row = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await handle(row)
            summary.processed += 1
            bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(workers, len(todo))))))
    finally:
        bar.close()
    summary.reject_reasons = dict(reasons)
    summary.elapsed_s = round(time.perf_counter() - start, 3)
    _fill_data_stats(summary, output)
    return summary


def _output_row(row, raw_ids, raw_text, fields, augmenter, chunk_tokens, limits, attempt) -> dict:
    out = {"id": row["id"], "source_id": row.get("source_id", ""), "source_sha": row["source_sha"]}
    for key in ("split", "partition"):
        if key in row:
            out[key] = row[key]
    out.update(
        raw_chunk_ids=raw_ids,
        interleaved_thinking_ids=fields["interleaved_thinking_ids"],
        raw_text=raw_text,
        augmented_text=fields["augmented_text"],
        text=fields["augmented_text"],
        teacher_model=augmenter.model,
        teacher_backend=augmenter.backend,
        augmenter=augmenter.kind,
        prompt_version=augmenter.prompt_version,
        chunk_tokens=chunk_tokens,
        max_augmented_tokens=limits.max_augmented_tokens,
        prefix_tokens=len(row["prefix_ids"]),
        think_count=fields["think_count"],
        raw_word_coverage=fields["raw_word_coverage"],
        truncated=fields["truncated"],
        attempts=attempt,
    )
    return out


def _fill_data_stats(summary: AugmentSummary, output: Path) -> None:
    rows = read_appended_rows(output, AUGMENTED_SCHEMA)
    summary.output_rows_total = len(rows)
    if not rows:
        return
    summary.thoughts_per_row_mean = round(statistics.fmean(r["think_count"] for r in rows), 4)
    lengths = [n for r in rows for n in thought_word_counts(r["augmented_text"])]
    summary.thought_words_median = statistics.median(lengths) if lengths else None
    summary.raw_word_coverage_mean = round(statistics.fmean(r["raw_word_coverage"] for r in rows), 4)
    summary.truncated_rows = sum(bool(r.get("truncated")) for r in rows)


# --------------------------------------------------------------------------- CLI


@dataclass
class AugmentArguments:
    """Flags of ``python -m trl_ext.data.augment`` (also usable from a YAML via ``--config``)."""

    input: str = field(metadata={"help": "Prefix/suffix examples JSONL (rows of trl_ext.data.chunking)."})
    output: str = field(metadata={"help": "Augmented rows JSONL; appended to, so re-running resumes."})
    rejects: str | None = field(
        default=None, metadata={"help": "Rejected rows JSONL with reasons (default: <output>.rejects.jsonl)."}
    )
    teacher: str = field(
        default="server",
        metadata={
            "help": "'server': an OpenAI-compatible teacher at --base_urls; 'offline': the labelled rule."
        },
    )
    base_urls: list[str] = field(
        default_factory=list,
        metadata={"help": "Teacher endpoint(s), e.g. http://127.0.0.1:30000 (round-robin)."},
    )
    model: str = field(default="default", metadata={"help": "Model name sent to the teacher server."})
    api_key: str | None = field(default=None, metadata={"help": "Bearer token for hosted teachers."})
    prompt: str = field(
        default="interleaved_thinking_v1", metadata={"help": "Packaged prompt name or a template file path."}
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "Student tokenizer dir/id (default: the embedded Qwen3 tokenizer)."}
    )
    partitions: list[str] = field(
        default_factory=list, metadata={"help": "Only rows whose 'partition' is listed (e.g. sft heldout)."}
    )
    max_rows: int | None = field(
        default=None, metadata={"help": "Augment only the first N selected input rows."}
    )
    chunk_tokens: int = field(default=512, metadata={"help": "Raw chunk = (prefix_ids + suffix_ids)[:N]."})
    max_augmented_tokens: int = field(
        default=768, metadata={"help": "Truncate augmented ids to this length."}
    )
    min_augmented_tokens: int = field(
        default=32, metadata={"help": "Reject rows shorter than this after truncation."}
    )
    min_thoughts: int = field(default=3, metadata={"help": "Fewest thoughts a kept row may have."})
    max_thoughts: int = field(default=6, metadata={"help": "Most thoughts a kept row may have."})
    min_word_coverage: float = field(default=0.60, metadata={"help": "Share of raw words that must survive."})
    attempts: int = field(default=3, metadata={"help": "Teacher samples per row before it is rejected."})
    temperature: float = field(default=0.6, metadata={"help": "Teacher sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Teacher nucleus sampling."})
    max_tokens: int = field(default=1536, metadata={"help": "Teacher max completion tokens."})
    disable_teacher_thinking: bool = field(
        default=True,
        metadata={"help": "Send chat_template_kwargs.enable_thinking=false (Qwen3-style teachers)."},
    )
    max_concurrency: int = field(default=32, metadata={"help": "Concurrent teacher requests."})
    timeout_s: float = field(default=120.0, metadata={"help": "Per-request timeout in seconds."})
    max_retries: int = field(default=3, metadata={"help": "Transport retries per request (5xx, timeouts)."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})


def _select_rows(args: AugmentArguments) -> list[dict]:
    from trl_ext.data.chunking import PREFIX_SUFFIX_SCHEMA

    rows = read_rows(args.input, PREFIX_SUFFIX_SCHEMA).rows
    if args.partitions:
        for line, row in enumerate(rows, start=1):
            if "partition" not in row:
                raise RowFileError(args.input, line, "partition", "missing, but --partitions was given")
        rows = [r for r in rows if r["partition"] in args.partitions]
    return rows[: args.max_rows] if args.max_rows is not None else rows


def run(args: AugmentArguments) -> AugmentSummary:
    """Run the job described by ``args`` (the CLI without argument parsing)."""
    from transformers import AutoTokenizer

    from trl_ext.client import OpenAICompatibleClient

    if args.teacher not in ("server", "offline"):
        raise ValueError(f"--teacher must be 'server' or 'offline', got {args.teacher!r}")
    if args.teacher == "server" and not args.base_urls:
        raise ValueError(
            "--teacher server needs --base_urls (or use --teacher offline for the labelled rule)"
        )
    tokenizer_path = args.tokenizer
    if tokenizer_path is None:
        from trl_ext.assets import embedded_default

        tokenizer_path = str(embedded_default().tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    _think_ids(tokenizer)
    rows = _select_rows(args)
    output = Path(args.output)
    rejects = Path(args.rejects) if args.rejects else output.with_name(output.stem + ".rejects.jsonl")
    limits = AugmentLimits(
        min_thoughts=args.min_thoughts,
        max_thoughts=args.max_thoughts,
        min_word_coverage=args.min_word_coverage,
        max_augmented_tokens=args.max_augmented_tokens,
        min_augmented_tokens=args.min_augmented_tokens,
    )

    async def main() -> AugmentSummary:
        if args.teacher == "offline":
            augmenter: Augmenter = OfflineRuleAugmenter()
            client = None
        else:
            client = OpenAICompatibleClient(
                args.base_urls,
                model=args.model,
                max_concurrency=args.max_concurrency,
                timeout_s=args.timeout_s,
                max_retries=args.max_retries,
                api_key=args.api_key,
            )
            sampling: dict[str, Any] = {"temperature": args.temperature, "top_p": args.top_p}
            if args.disable_teacher_thinking:
                sampling["chat_template_kwargs"] = {"enable_thinking": False}
            augmenter = TeacherAugmenter(client, load_prompt(args.prompt), sampling, args.max_tokens)
        try:
            return await augment_file(
                rows,
                output,
                rejects,
                augmenter,
                tokenizer,
                limits,
                chunk_tokens=args.chunk_tokens,
                attempts=args.attempts,
                workers=args.max_concurrency,
                progress=args.progress,
            )
        finally:
            if client is not None:
                await client.aclose()

    summary = asyncio.run(main())
    summary_path = output.with_name(output.stem + ".summary.json")
    summary_path.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> AugmentSummary:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(AugmentArguments, allow_abbrev=False)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--config":
        (args,) = parser.parse_yaml_file(argv[1])
    else:
        (args,) = parser.parse_args_into_dataclasses(args=argv)
    try:
        summary = run(args)
    except (RowFileError, ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    print(json.dumps(asdict(summary), indent=2))
    check_accepted(summary, args)
    return summary


def check_accepted(summary: AugmentSummary, args: AugmentArguments) -> None:
    """A run that accepted nothing is a failure, not an empty success: the next stage would train on
    an empty file (or on nothing new) and the only trace would be a warning in a long log."""
    if summary.output_rows_total and (summary.accepted or not summary.processed):
        return
    output = Path(args.output)
    rejects = Path(args.rejects) if args.rejects else output.with_name(output.stem + ".rejects.jsonl")
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.reject_reasons.items())) or "none recorded"
    raise SystemExit(
        f"error: no row was accepted ({summary.processed} processed, {summary.rejected} rejected; reasons: "
        f"{reasons}); {output} has {summary.output_rows_total} rows. See {rejects} for each rejected row."
    )


if __name__ == "__main__":
    main()
