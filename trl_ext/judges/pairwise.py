"""Pairwise judges ``(prefix, option_1, option_2) → 1 | 2 | invalid`` and the paper's pointwise rubrics.

* :class:`LLMPairwiseJudge` asks an instruct model behind an OpenAI-compatible endpoint (SGLang in
  production) with the ``pairwise_quality`` prompt and reads its fixed ``Conclusion: Option N`` line.
  Failed calls and unparseable replies are *invalid* verdicts, counted in ``judge.stats`` — never a
  default winner (the reference run turned them into "B").
* :class:`LikelihoodPairwiseJudge`, an offline judge for CPU runs and tests: the option with the
  higher mean token log-likelihood given the prefix under a frozen scorer LM wins. It has no position
  preference and no built-in preference for the original suffix.
* :class:`LLMSafetyJudge` (candidate alone, safe/unsafe → 1/0) and :func:`factuality_judge` (against
  the original suffix: no / possible / definite hallucination → 1 / 0.5 / 0), pointwise TRL reward
  functions the trainer can use in place of, or next to, the pairwise quality judge.

Verdicts, invalid accounting, templates, transport and the sync/async bridge are the shared ones from
:mod:`trl_ext.judges.base` and :mod:`trl_ext.judges.llm`. A pairwise verdict is a
:class:`~trl_ext.judges.base.JudgeVerdict` whose ``score`` is the option *as shown* (1.0 or 2.0). The
A/B swap, repeats and pool scores live in :mod:`trl_ext.pairing`; a judge answers the calls it is given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from trl_ext.client import OpenAICompatibleClient
from trl_ext.judges.base import (
    JudgeStats,
    JudgeVerdict,
    PointwiseRewardFunc,
    answer_text,
    completion_text,
    parse_json_field,
)
from trl_ext.judges.llm import LLMJudge, RequestMode, TemplatedLLMJudge

PAIRWISE_FIELDS = {"prefix", "option_1", "option_2"}
_CONCLUSION_RE = re.compile(r"conclusion[\s:*\-]*option[\s*]*([12])\b", re.IGNORECASE)


def parse_pairwise_conclusion(reply: str | None) -> tuple[int | None, str | None]:
    """``(1 | 2, None)`` from the reply's ``Conclusion: Option N`` lines, else ``(None, reason)``.

    Reasoning blocks are dropped first; a conclusion inside an unclosed one is invalid. Several conclusions
    that disagree are invalid, not "the last one".
    """
    if not reply:
        return None, "unparseable: empty reply"
    text, error = answer_text(reply)
    if text is None:
        return None, error
    found = {int(m) for m in _CONCLUSION_RE.findall(text)}
    if not found:
        return None, "unparseable: no 'Conclusion: Option 1|2' line"
    if len(found) > 1:
        return None, "unparseable: conflicting conclusions"
    return found.pop(), None


def winner_of(verdict: JudgeVerdict) -> int | None:
    """The option (as shown) a pairwise verdict picked, or None when invalid."""
    return None if verdict.score is None else int(verdict.score)


@runtime_checkable
class PairwiseJudge(Protocol):
    """Anything with ``judge_pairs``: one verdict per (prefix, option_1, option_2), in order."""

    def judge_pairs(
        self, prefixes: Sequence[str], options_1: Sequence[str], options_2: Sequence[str]
    ) -> list[JudgeVerdict]: ...


def _check_lengths(prefixes: Sequence[str], options_1: Sequence[str], options_2: Sequence[str]) -> None:
    if not len(prefixes) == len(options_1) == len(options_2):
        raise ValueError(
            f"pairwise judge got {len(prefixes)} prefixes, {len(options_1)} option_1, "
            f"{len(options_2)} option_2"
        )


class LLMPairwiseJudge(TemplatedLLMJudge):
    """Pairwise quality judge over an OpenAI-compatible endpoint.

    Example::

        judge = LLMPairwiseJudge(base_url=["http://127.0.0.1:30000"], max_concurrency=64)
        verdicts = judge.judge_pairs([prefix], [text_a], [text_b])  # [JudgeVerdict(score=2.0, ...)]
        judge.stats.invalid_rate

    Args mirror :class:`~trl_ext.judges.llm.LLMJudge`: ``prompt`` is a packaged template name or a
    file with ``{{prefix}}``, ``{{option_1}}``, ``{{option_2}}``; sampling defaults follow the reference
    run (T 0.7, top_p 0.6) with room for three sentences of reasons (``max_tokens=256``; a reply cut by
    it is invalid, ``truncated``); pass ``request_extra={"chat_template_kwargs": {"enable_thinking": False}}``
    for a Qwen3 judge. The prefix keeps its last ``max_field_chars`` characters, each option its first.
    ``invalid_log_path``: JSONL file to which every invalid verdict is appended with its reason and raw
    reply. ``wait_until_ready(timeout_s)`` before training; ``close()`` (or ``with``) at the end.
    """

    def __init__(
        self,
        base_url: str | Sequence[str] | None = None,
        prompt: str | Path = "pairwise_quality",
        *,
        model: str = "default",
        mode: RequestMode = "chat",
        temperature: float = 0.7,
        top_p: float = 0.6,
        max_tokens: int = 256,
        max_field_chars: int | None = 2000,
        max_concurrency: int = 32,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        request_extra: dict[str, Any] | None = None,
        client: OpenAICompatibleClient | None = None,
        invalid_log_path: str | Path | None = None,
    ):
        self._init_llm(
            "LLMPairwiseJudge",
            base_url,
            client,
            prompt,
            PAIRWISE_FIELDS,
            "pairwise judge template",
            transport={
                "model": model,
                "max_concurrency": max_concurrency,
                "timeout_s": timeout_s,
                "max_retries": max_retries,
                "backoff_s": backoff_s,
            },
            mode=mode,
            sampling={"temperature": temperature, "top_p": top_p, **(request_extra or {})},
            max_tokens=max_tokens,
            max_field_chars=max_field_chars,
            invalid_log_path=invalid_log_path,
        )

    def parse_reply(self, text: str) -> tuple[float | None, str | None]:
        return parse_pairwise_conclusion(text)

    async def ajudge_pairs(
        self, prefixes: Sequence[str], options_1: Sequence[str], options_2: Sequence[str]
    ) -> list[JudgeVerdict]:
        _check_lengths(prefixes, options_1, options_2)
        items = [
            {"prefix": p, "option_1": a, "option_2": b} for p, a, b in zip(prefixes, options_1, options_2)
        ]
        return await self._judge_items(items, {"option_1": 200})

    def judge_pairs(
        self, prefixes: Sequence[str], options_1: Sequence[str], options_2: Sequence[str]
    ) -> list[JudgeVerdict]:
        return self._run(lambda: self.ajudge_pairs(prefixes, options_1, options_2))


class LikelihoodPairwiseJudge:
    """Offline pairwise judge from a frozen scorer LM; the option with the higher per-token score wins.

    ``criterion="pmi"`` (default) scores how much the prefix helps predict the option: mean over option
    tokens of ``log p(token | prefix, ...) - log p(token | <document start>, ...)``. It is a coherence
    signal that does not simply reward text the scorer finds likely anyway, so neither the policy's own
    rollouts (likely under a scorer close to the policy) nor the original suffix wins by construction.
    ``criterion="loglik"`` uses the conditional mean log-likelihood alone.

    ``model`` is a causal LM or a checkpoint directory (the embedded tiny model on CPU, a real base model
    elsewhere). Each distinct (prefix, option) is scored once per call, so 136 pairs over 17 candidates
    cost 17 (x2 for pmi) sequences. Scores within ``tie_tolerance`` are an *invalid* tie; an empty option
    loses to a non-empty one.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        criterion: str = "pmi",
        tie_tolerance: float = 1e-6,
        batch_size: int = 16,
        max_prefix_tokens: int = 384,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if criterion not in ("pmi", "loglik"):
            raise ValueError(f"criterion must be 'pmi' or 'loglik', got {criterion!r}")
        if isinstance(model, str | Path):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        if tokenizer is None:
            raise ValueError("LikelihoodPairwiseJudge needs a tokenizer when given a model object")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.criterion = criterion
        self.tie_tolerance, self.batch_size, self.max_prefix_tokens = (
            tie_tolerance,
            batch_size,
            max_prefix_tokens,
        )
        self.stats = JudgeStats()

    def option_scores(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """The criterion per (prefix, option); ``-inf`` for an empty option."""
        tok = self.tokenizer
        start_ids = [tok.eos_token_id if tok.eos_token_id is not None else tok.pad_token_id]
        encoded = [
            (
                tok(p, add_special_tokens=False)["input_ids"][-self.max_prefix_tokens :] or start_ids,
                tok(o, add_special_tokens=False)["input_ids"],
            )
            for p, o in pairs
        ]
        conditional = self.mean_logliks(encoded)
        if self.criterion == "loglik":
            return conditional
        unconditional = self.mean_logliks([(start_ids, o) for _, o in encoded])
        return [c - u if o else c for c, u, (_, o) in zip(conditional, unconditional, encoded)]

    def mean_logliks(self, rows: Sequence[tuple[list[int], list[int]]]) -> list[float]:
        """Mean log-prob per option token given its context ids (``-inf`` for an empty option)."""
        import torch

        from trl_ext.logprobs import token_logprobs

        device = next(self.model.parameters()).device
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        scores: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            width = max(len(p) + len(o) for p, o in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            att, mask = torch.zeros_like(ids), torch.zeros_like(ids)
            for k, (p, o) in enumerate(batch):
                ids[k, : len(p) + len(o)] = torch.tensor(p + o)
                att[k, : len(p) + len(o)] = 1
                mask[k, len(p) : len(p) + len(o)] = 1
            with torch.no_grad():
                lp = token_logprobs(self.model, ids.to(device), att.to(device), mask.to(device)).cpu()
            for k, (_, o) in enumerate(batch):
                scores.append(float(lp[k].sum()) / len(o) if o else float("-inf"))
        return scores

    def judge_pairs(
        self, prefixes: Sequence[str], options_1: Sequence[str], options_2: Sequence[str]
    ) -> list[JudgeVerdict]:
        _check_lengths(prefixes, options_1, options_2)
        start = time.perf_counter()
        distinct = list(
            dict.fromkeys((p, o) for p, a, b in zip(prefixes, options_1, options_2) for o in (a, b))
        )
        score = dict(zip(distinct, self.option_scores(distinct)))
        latency = (time.perf_counter() - start) / max(len(prefixes), 1)
        verdicts = []
        for p, a, b in zip(prefixes, options_1, options_2):
            sa, sb = score[(p, a)], score[(p, b)]
            raw = f"{self.criterion} option_1={sa:.6f} option_2={sb:.6f}"
            if sa == sb or abs(sa - sb) <= self.tie_tolerance:
                verdict = JudgeVerdict.invalid("tie: equal scores", raw=raw, latency_s=latency)
            else:
                verdict = JudgeVerdict(score=1.0 if sa > sb else 2.0, raw=raw, latency_s=latency)
            self.stats.record(verdict)
            verdicts.append(verdict)
        return verdicts


class LLMSafetyJudge(TemplatedLLMJudge, PointwiseRewardFunc):
    """Pointwise safety rubric on the candidate alone: ``{"score": 1}`` safe / ``{"score": 0}`` unsafe.

    A TRL reward function (``None`` = invalid). Unlike the other pointwise judges it needs no reference
    column: it never compares the candidate with anything.
    """

    __name__ = "safety_judge"

    def __init__(
        self,
        base_url: str | Sequence[str] | None = None,
        prompt: str | Path = "pointwise_safety",
        *,
        model: str = "default",
        mode: RequestMode = "chat",
        temperature: float = 0.0,
        max_tokens: int = 16,
        max_field_chars: int | None = 2000,
        max_concurrency: int = 32,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        request_extra: dict[str, Any] | None = None,
        client: OpenAICompatibleClient | None = None,
        invalid_log_path: str | Path | None = None,
    ):
        super().__init__()
        self._init_llm(
            "LLMSafetyJudge",
            base_url,
            client,
            prompt,
            {"candidate"},
            "safety template",
            transport={
                "model": model,
                "max_concurrency": max_concurrency,
                "timeout_s": timeout_s,
                "max_retries": max_retries,
            },
            mode=mode,
            sampling={"temperature": temperature, **(request_extra or {})},
            max_tokens=max_tokens,
            max_field_chars=max_field_chars,
            invalid_log_path=invalid_log_path,
            show_used_fields=False,
        )

    def parse_reply(self, text: str) -> tuple[float | None, str | None]:
        return parse_json_field(text, "score", (0, 1))

    def judge(
        self, prefixes: Sequence[str], candidates: Sequence[str], references: Sequence[str] | None = None
    ) -> list[JudgeVerdict]:
        items = [{"candidate": c} for c in candidates]
        return self._run(lambda: self._judge_items(items, {"candidate": 300}))

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        verdicts = self.judge([], [completion_text(c) for c in completions])
        self.last_verdicts = verdicts
        return [v.score for v in verdicts]


def factuality_judge(base_url: str | Sequence[str] | None = None, **kwargs: Any) -> LLMJudge:
    """Pointwise factuality vs the original suffix (reference column): 1 / 0.5 / 0 for no / possible /
    definite hallucination. It is the shared :class:`LLMJudge` with the ``pointwise_factuality`` prompt."""
    kwargs.setdefault("name", "factuality_judge")
    return LLMJudge(base_url=base_url, prompt="pointwise_factuality", allowed_scores=(0, 0.5, 1), **kwargs)


__all__ = [
    "LLMPairwiseJudge",
    "LLMSafetyJudge",
    "LikelihoodPairwiseJudge",
    "PairwiseJudge",
    "factuality_judge",
    "parse_pairwise_conclusion",
    "winner_of",
]
