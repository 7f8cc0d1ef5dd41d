"""Judge building blocks shared by pointwise and pairwise judges.

* :class:`JudgeVerdict` — one judgement: a score, or *invalid* with the reason and the raw reply.
  Invalid is a first-class outcome: a failed call or an unparseable reply is never defaulted to a
  score (the reference run silently turned failures into "B"; we count them instead).
* :class:`JudgeStats` — invalid accounting: counts by reason, latency, and the raw replies of
  recent invalid verdicts (also logged, and optionally appended to a JSONL file).
* :class:`PromptTemplate` / :func:`load_prompt_template` — templates shipped as package data
  (``trl_ext/judges/prompts/*.txt``) or given as a path, with ``{{field}}`` placeholders that
  must all be filled (a typo in a field name is an error, not an empty string in the prompt).
* :func:`answer_text` / :func:`parse_json_field` — a reply's answer outside any reasoning block
  (an unclosed block is invalid, never read), and strict parsing of a ``{"score": 1}``-style reply.
* :class:`PointwiseRewardFunc` — adapts a pointwise judge ``(prefix, candidate, reference) →
  score | invalid`` to TRL's reward-function convention; invalid becomes ``None``, which TRL
  turns into NaN and excludes.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from trl_ext.data.markup import THINK_OPEN, strip_thoughts
from trl_ext.data.rows import append_row

logger = logging.getLogger(__name__)

PROMPTS_PACKAGE = "trl_ext.judges.prompts"
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SECTION_RE = re.compile(r"^\[(system|user)\]\s*$", re.MULTILINE)


@dataclass
class JudgeVerdict:
    """One judgement. ``score`` is None exactly when the verdict is invalid."""

    score: float | None
    raw: str | None = None  # the judge's reply text, kept for audit of invalid verdicts
    # Why it is invalid, "<reason>: <detail>"; reasons: call_failed, truncated, unclosed_reasoning,
    # unparseable (LLM judges), tie (likelihood judge).
    error: str | None = None
    latency_s: float = 0.0

    @property
    def valid(self) -> bool:
        return self.score is not None

    @property
    def reason(self) -> str | None:
        """The invalid reason without its detail (the key counted in :class:`JudgeStats`)."""
        return None if self.error is None else self.error.split(":")[0]

    @classmethod
    def invalid(cls, error: str, raw: str | None = None, latency_s: float = 0.0) -> JudgeVerdict:
        return cls(score=None, raw=raw, error=error, latency_s=latency_s)


@dataclass
class JudgeStats:
    """Running invalid accounting for one judge (thread-unsafe by design: one trainer, one judge).

    The counters survive resume through :meth:`state_dict` / :meth:`load_state_dict`, which
    :class:`trl_ext.judges.stats.JudgeStatsCallback` saves with every checkpoint.
    """

    calls: int = 0
    valid: int = 0
    invalid: int = 0
    reasons: Counter = field(default_factory=Counter)
    latency_s_total: float = 0.0
    recent_invalid: deque = field(default_factory=lambda: deque(maxlen=64))
    invalid_log_path: str | Path | None = None

    @property
    def invalid_rate(self) -> float:
        return self.invalid / self.calls if self.calls else 0.0

    @property
    def mean_latency_s(self) -> float:
        return self.latency_s_total / self.calls if self.calls else 0.0

    def record(self, verdict: JudgeVerdict, context: Mapping[str, Any] | None = None) -> None:
        self.calls += 1
        self.latency_s_total += verdict.latency_s
        if verdict.valid:
            self.valid += 1
            return
        self.invalid += 1
        reason = verdict.reason or "unknown"
        self.reasons[reason] += 1
        record = {
            "time": time.time(),
            "reason": reason,
            "error": verdict.error,
            "raw": verdict.raw,
            **(context or {}),
        }
        self.recent_invalid.append(record)
        # A dead or confused judge produces thousands of identical failures per step: warn on the
        # first of each kind and then every 100th; every record still goes to invalid_log_path.
        count = self.reasons[reason]
        level = logging.WARNING if count == 1 or count % 100 == 0 else logging.DEBUG
        logger.log(level, "invalid judge verdict #%d of kind %r (%s); raw reply: %r", count, reason,
                   verdict.error, (verdict.raw or "")[:500])  # fmt: skip
        if self.invalid_log_path is not None:
            append_row(self.invalid_log_path, record)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "valid": self.valid,
            "invalid": self.invalid,
            "invalid_rate": self.invalid_rate,
            "mean_latency_s": self.mean_latency_s,
            "invalid_reasons": dict(self.reasons),
        }

    def state_dict(self) -> dict[str, Any]:
        """The counters (JSON-safe); the recent raw replies are not state (they are in the invalid log)."""
        return {
            "calls": self.calls,
            "valid": self.valid,
            "invalid": self.invalid,
            "reasons": dict(self.reasons),
            "latency_s_total": self.latency_s_total,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Set the counters to a saved :meth:`state_dict` (replaces, never adds: a resumed run
        re-judges nothing that was counted before its checkpoint)."""
        missing = {"calls", "valid", "invalid", "reasons", "latency_s_total"} - state.keys()
        if missing:
            raise KeyError(f"judge stats state lacks {sorted(missing)}; got keys {sorted(state)}")
        self.calls, self.valid, self.invalid = int(state["calls"]), int(state["valid"]), int(state["invalid"])
        self.reasons = Counter({str(k): int(v) for k, v in state["reasons"].items()})
        self.latency_s_total = float(state["latency_s_total"])

    @staticmethod
    def sum_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One state with the counters of several (e.g. one per rank) added up."""
        reasons: Counter = Counter()
        for state in states:
            reasons.update(state["reasons"])
        return {
            "calls": sum(s["calls"] for s in states),
            "valid": sum(s["valid"] for s in states),
            "invalid": sum(s["invalid"] for s in states),
            "reasons": dict(reasons),
            "latency_s_total": sum(s["latency_s_total"] for s in states),
        }


@dataclass(frozen=True)
class PromptTemplate:
    """A judge prompt: optional system text and a user text with ``{{field}}`` placeholders."""

    name: str
    user: str
    system: str | None = None

    @property
    def fields(self) -> set[str]:
        return set(_PLACEHOLDER_RE.findall(self.user)) | set(_PLACEHOLDER_RE.findall(self.system or ""))

    def render(self, **values: str) -> tuple[str | None, str]:
        """``(system, user)`` with every placeholder filled; missing or unknown fields are errors."""
        missing = self.fields - values.keys()
        unknown = values.keys() - self.fields
        if missing or unknown:
            raise KeyError(
                f"prompt template {self.name!r} needs fields {sorted(self.fields)}; "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}"
            )

        def fill(text: str) -> str:
            return _PLACEHOLDER_RE.sub(lambda m: str(values[m.group(1)]), text)

        return (fill(self.system) if self.system else None), fill(self.user)

    def messages(self, **values: str) -> list[dict[str, str]]:
        system, user = self.render(**values)
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]

    def completion_prompt(self, **values: str) -> str:
        system, user = self.render(**values)
        return f"{system}\n\n{user}" if system else user


def parse_template(text: str, name: str) -> PromptTemplate:
    """Template file format: ``#`` comment lines first, then ``[system]`` and ``[user]`` sections
    (or no sections: the whole text is the user message)."""
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    body = "".join(lines)
    parts = _SECTION_RE.split(body)
    if len(parts) == 1:
        return PromptTemplate(name=name, user=body.strip("\n"))
    if parts[0].strip():
        raise ValueError(f"prompt template {name!r}: text before the first [system]/[user] section")
    sections: dict[str, str] = {}
    for key, content in zip(parts[1::2], parts[2::2]):
        if key in sections:
            raise ValueError(f"prompt template {name!r}: section [{key}] appears twice")
        sections[key] = content.strip("\n")
    if "user" not in sections:
        raise ValueError(f"prompt template {name!r}: no [user] section")
    return PromptTemplate(name=name, user=sections["user"], system=sections.get("system"))


def available_prompt_templates(package: str = PROMPTS_PACKAGE) -> list[str]:
    return sorted(p.name[:-4] for p in resources.files(package).iterdir() if p.name.endswith(".txt"))


def load_prompt_template(name_or_path: str | Path, package: str = PROMPTS_PACKAGE) -> PromptTemplate:
    """A packaged template by name (``"rlmt_reference_match"``) or a template file by path."""
    path = Path(name_or_path)
    if path.suffix and path.exists():
        return parse_template(path.read_text(encoding="utf-8"), name=path.stem)
    resource = resources.files(package) / f"{name_or_path}.txt"
    if not resource.is_file():
        raise FileNotFoundError(
            f"no judge prompt template {str(name_or_path)!r}: not a file, and not one of "
            f"{available_prompt_templates(package)} in {package}"
        )
    return parse_template(resource.read_text(encoding="utf-8"), name=str(name_or_path))


# Reasoning blocks judges emit before their answer: <think> (Qwen3, DeepSeek-R1), <thinking>, <reasoning>.
REASONING_TAGS = ("think", "thinking", "reasoning")
_JSON_OBJECT_RE = re.compile(r"\{[^{}]*\}")


def answer_text(reply: str, tags: Sequence[str] = REASONING_TAGS) -> tuple[str | None, str | None]:
    """The part of a judge reply that is its answer: ``(text, None)``, or ``(None, reason)`` when an
    answer cannot be told from reasoning.

    Closed ``<tag>…</tag>`` blocks are dropped. A close tag with no open tag (the chat template opened
    the block) drops everything before it. An open tag that is never closed is invalid
    (``unclosed_reasoning``): whatever follows it is the judge thinking aloud — "Conclusion: Option 1
    would be wrong…" — not a verdict.
    """
    text = reply
    for tag in tags:
        open_re = re.compile(rf"<{tag}>", re.IGNORECASE)
        close_re = re.compile(rf"</{tag}>", re.IGNORECASE)
        text = re.sub(rf"<{tag}>.*?</{tag}>", "", text, flags=re.DOTALL | re.IGNORECASE)
        closes = list(close_re.finditer(text))
        if closes:  # an unopened block: keep what follows the last close
            text = text[closes[-1].end() :]
        if open_re.search(text):
            return None, f"unclosed_reasoning: <{tag}> is never closed, so no answer can be read"
    return text, None


def strip_reasoning(reply: str) -> str:
    """The reply without reasoning blocks; ``""`` when a block is never closed (nothing is an answer)."""
    text, _ = answer_text(reply)
    return text or ""


def parse_json_field(reply: str, key: str, allowed: Sequence[Any]) -> tuple[Any | None, str | None]:
    """Strictly read ``{"<key>": value}`` from a reply: ``(value, None)`` or ``(None, reason)``.

    The reply must contain at least one JSON object with ``key``; every such object must agree;
    the value must be one of ``allowed`` (ints/floats compare numerically, bools are rejected).
    Anything else — no object, broken JSON, a value out of range, two different answers, an answer
    inside an unclosed reasoning block — is invalid: guessing would put judge noise into the reward.
    """
    text, error = answer_text(reply)
    if text is None:
        return None, error
    found: list[Any] = []
    for match in _JSON_OBJECT_RE.finditer(text):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and key in obj:
            found.append(obj[key])
    if not found:
        return None, f"unparseable: no JSON object with {key!r}"
    values = []
    for value in found:
        if isinstance(value, bool) or not any(_same(value, a) for a in allowed):
            return None, f"unparseable: {key}={value!r} not in {list(allowed)}"
        values.append(next(a for a in allowed if _same(value, a)))
    if len(set(map(repr, values))) > 1:
        return None, f"unparseable: conflicting {key} values {values}"
    return values[0], None


def _same(value: Any, allowed: Any) -> bool:
    if isinstance(allowed, int | float) and isinstance(value, int | float):
        return float(value) == float(allowed)
    return value == allowed


@runtime_checkable
class PointwiseJudge(Protocol):
    """``(prefix, candidate, reference) → score | invalid`` for a batch."""

    def judge(
        self, prefixes: Sequence[str], candidates: Sequence[str], references: Sequence[str]
    ) -> list[JudgeVerdict]: ...


def completion_text(completion: Any) -> str:
    """TRL passes plain strings or, for conversational data, ``[{"role": "assistant", ...}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"cannot read a completion of type {type(completion).__name__}")


def prefix_from_prompt(prompt: Any) -> str:
    """The judge's prefix when the dataset has no ``prefix`` column: the prompt without its open
    ``<think>`` and without any earlier thoughts (a judge sees raw text only)."""
    text = completion_text(prompt) if not isinstance(prompt, str) else prompt
    stripped = text.rstrip()
    if stripped.endswith(THINK_OPEN):
        stripped = stripped[: -len(THINK_OPEN)]
    return strip_thoughts(stripped).rstrip()


class PointwiseRewardFunc:
    """TRL reward-function adapter for a pointwise judge.

    TRL calls ``reward_func(prompts=, completions=, completion_ids=, **dataset_columns)``. The
    judge's ``reference`` comes from the ``reference`` column (override with
    ``reference_column``); its ``prefix`` from the ``prefix`` column when present, else from the
    prompt (see :func:`prefix_from_prompt`). ``ThinkingGRPOTrainer`` passes only the suffix as
    the completion, so a judge used there never sees the thought.
    """

    __name__ = "pointwise_judge"
    reference_column = "reference"
    prefix_column = "prefix"

    def __init__(self) -> None:
        self.stats = JudgeStats()

    def judge(
        self, prefixes: Sequence[str], candidates: Sequence[str], references: Sequence[str]
    ) -> list[JudgeVerdict]:
        raise NotImplementedError

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        references = kwargs.get(self.reference_column)
        if references is None:
            raise KeyError(
                f"{type(self).__name__} needs a {self.reference_column!r} column in the training dataset "
                f"(the reference continuation); got columns {sorted(kwargs)}"
            )
        prefixes = kwargs.get(self.prefix_column) or [prefix_from_prompt(p) for p in prompts]
        candidates = [completion_text(c) for c in completions]
        verdicts = self.judge(list(prefixes), candidates, list(references))
        self.last_verdicts = verdicts
        return [v.score for v in verdicts]
