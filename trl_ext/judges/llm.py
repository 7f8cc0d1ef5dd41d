"""LLM judges over any OpenAI-compatible endpoint (SGLang in production, ``transformers serve`` on CPU).

Transport (bounded concurrency, timeouts, retries with backoff, several endpoints round-robin)
is :class:`trl_ext.client.OpenAICompatibleClient`'s job; this module renders prompts, fans out
one request per item, and parses replies strictly. A call that fails after its retries, a reply
cut by ``max_tokens``, an answer inside an unclosed reasoning block, or a reply that does not
parse is an invalid :class:`~trl_ext.judges.base.JudgeVerdict`: counted in ``judge.stats``, logged
with the raw reply, returned to TRL as ``None`` (excluded from the group), never turned into a
score. See docs/judges.md.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from trl_ext.client import GenerationResult, OpenAICompatibleClient
from trl_ext.judges.base import (
    JudgeStats,
    JudgeVerdict,
    PointwiseRewardFunc,
    PromptTemplate,
    load_prompt_template,
    parse_json_field,
)

T = TypeVar("T")
RequestMode = Literal["chat", "completion"]
ClipSide = Literal["keep_start", "keep_end"]

# Which end of a long field the judge keeps. The prefix keeps its END: the judge must read the text
# right before the continuation it judges. Candidates, references and options keep their START: the
# part that follows the prefix. Every template field needs an entry (a new field is a decision).
CLIP_SIDES: dict[str, ClipSide] = {
    "prefix": "keep_end",
    "candidate": "keep_start",
    "reference": "keep_start",
    "option_1": "keep_start",
    "option_2": "keep_start",
}


def run_sync(awaitable: Awaitable[T]) -> T:
    """Run a coroutine from synchronous code, also when this thread already runs an event loop
    (notebooks, async frameworks): then it runs on a private loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(awaitable)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(awaitable)
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=target, name="trl_ext-judge", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def batch_generate(
    client: OpenAICompatibleClient,
    template: PromptTemplate,
    items: Sequence[dict[str, str]],
    *,
    mode: RequestMode = "chat",
    max_tokens: int = 64,
    **sampling: Any,
) -> list[GenerationResult]:
    """One request per item (rendered from ``template``), all in flight at once under the client's
    concurrency bound; results come back in item order."""
    if mode == "chat":
        calls = [client.chat(template.messages(**item), max_tokens=max_tokens, **sampling) for item in items]
    elif mode == "completion":
        calls = [
            client.complete(template.completion_prompt(**item), max_tokens=max_tokens, **sampling)
            for item in items
        ]
    else:
        raise ValueError(f"mode must be 'chat' or 'completion', got {mode!r}")
    return list(await asyncio.gather(*calls))


def clip(text: str, max_chars: int | None, side: ClipSide = "keep_start") -> str:
    """Bound what the judge reads (the reference run used 2000 characters per field): the first
    ``max_chars`` characters (``keep_start``) or the last (``keep_end``)."""
    if max_chars is None or len(text) <= max_chars:
        return text
    if side == "keep_start":
        return text[:max_chars]
    if side == "keep_end":
        return text[len(text) - max_chars :]
    raise ValueError(f"clip side must be 'keep_start' or 'keep_end', got {side!r}")


class TemplatedLLMJudge:
    """Plumbing shared by the prompt-template LLM judges (pointwise, pairwise, safety), so transport,
    template checks, field clipping, strict verdicts and invalid accounting behave the same in all.

    A subclass builds itself with :meth:`_init_llm`, says how to read a reply in :meth:`parse_reply`,
    and keeps its own public ``judge``/``judge_pairs`` signature on top of :meth:`_judge_items`
    (async) and :meth:`_run` (sync).

    Lifetime: a judge holds one :class:`OpenAICompatibleClient` for the whole run, and every sync call
    runs on that client's own event loop thread, so all steps share one connection pool. ``close()``
    (or ``with judge:``, or interpreter exit) ends it; a client passed in by the caller is the
    caller's to close.
    """

    CLIP_SIDES: ClassVar[Mapping[str, ClipSide]] = CLIP_SIDES
    client: OpenAICompatibleClient
    template: PromptTemplate
    mode: RequestMode
    sampling: dict[str, Any]
    max_tokens: int
    max_field_chars: int | None
    stats: JudgeStats

    def _init_llm(
        self,
        owner: str,
        base_url: str | Sequence[str] | None,
        client: OpenAICompatibleClient | None,
        prompt: str | Path,
        fields: set[str],
        template_kind: str,
        *,
        transport: Mapping[str, Any],
        mode: RequestMode,
        sampling: dict[str, Any],
        max_tokens: int,
        max_field_chars: int | None,
        invalid_log_path: str | Path | None = None,
        show_used_fields: bool = True,
    ) -> None:
        """Client (a given one wins, so judges can share a pool), template with exactly ``fields``
        (a typo'd placeholder fails here, not as a half-empty prompt), request settings, stats."""
        if client is None and base_url is None:
            raise ValueError(f"{owner} needs base_url (one URL or a list) or an OpenAICompatibleClient")
        self._owns_client = client is None
        self.client = client or OpenAICompatibleClient(base_url, **transport)
        self.template = load_prompt_template(prompt)
        if self.template.fields != fields:
            used = f", uses {sorted(self.template.fields)}" if show_used_fields else ""
            raise ValueError(
                f"{template_kind} {self.template.name!r} must use exactly {sorted(fields)}{used}"
            )
        no_policy = fields - self.CLIP_SIDES.keys()
        if no_policy:
            raise ValueError(f"{owner}: no clip side for template fields {sorted(no_policy)} in CLIP_SIDES")
        if max_field_chars is not None and max_field_chars < 1:
            raise ValueError(f"{owner}: max_field_chars must be >= 1 or None, got {max_field_chars}")
        self.mode, self.sampling = mode, sampling
        self.max_tokens, self.max_field_chars = max_tokens, max_field_chars
        self.stats = JudgeStats(invalid_log_path=invalid_log_path)

    def parse_reply(self, text: str) -> tuple[float | None, str | None]:
        """``(score, None)`` or ``(None, reason)`` for one reply; the only per-judge part of a verdict."""
        raise NotImplementedError

    def verdict_from_result(self, result: GenerationResult) -> JudgeVerdict:
        """A failed call, a reply cut by the token limit, or a reply that does not parse is invalid
        with its reason, never a default score. A cut reply is invalid even when a verdict appears
        before the cut: the judge had not finished, and may have been about to revise it."""
        if not result.ok or result.text is None:
            return JudgeVerdict.invalid(
                f"call_failed: {result.error}", raw=result.text, latency_s=result.latency_s
            )
        if result.finish_reason == "length":
            return JudgeVerdict.invalid(
                f"truncated: reply hit max_tokens={self.max_tokens} before it finished",
                raw=result.text,
                latency_s=result.latency_s,
            )
        score, error = self.parse_reply(result.text)
        if error is not None:
            return JudgeVerdict.invalid(error, raw=result.text, latency_s=result.latency_s)
        return JudgeVerdict(score=float(score), raw=result.text, latency_s=result.latency_s)

    def clip_fields(self, item: Mapping[str, str]) -> dict[str, str]:
        """Each field clipped to ``max_field_chars`` from the side :attr:`CLIP_SIDES` names for it."""
        return {key: clip(value, self.max_field_chars, self.CLIP_SIDES[key]) for key, value in item.items()}

    async def _judge_items(
        self, items: Sequence[Mapping[str, str]], log_fields: Mapping[str, int]
    ) -> list[JudgeVerdict]:
        """Clip every field, one request per item, one verdict each, all recorded in ``stats``.

        ``log_fields`` maps a field to how many of its characters go into an invalid verdict's log
        record, so a bad reply can be traced back to the input it judged.
        """
        clipped = [self.clip_fields(item) for item in items]
        results = await batch_generate(
            self.client, self.template, clipped, mode=self.mode, max_tokens=self.max_tokens, **self.sampling
        )
        verdicts = [self.verdict_from_result(r) for r in results]
        for index, verdict in enumerate(verdicts):
            context = {key: clipped[index][key][:chars] for key, chars in log_fields.items()}
            self.stats.record(verdict, {"judge": self.template.name, "index": index, **context})
        return verdicts

    def _run(self, coro_factory: Callable[[], Awaitable[T]]) -> T:
        """Run a judging coroutine from sync code on the client's long-lived loop (one pool per run)."""

        async def run() -> T:
            return await coro_factory()

        return self.client.run(run())

    def wait_until_ready(self, timeout_s: float = 180.0, poll_s: float = 0.5) -> None:
        """Block until every judge URL serves the judge model; ``TimeoutError`` naming the URL that is
        not. Call it before training, so a dead judge stops the run instead of voiding every verdict."""
        self.client.wait_until_ready(timeout_s=timeout_s, poll_s=poll_s)

    def close(self) -> None:
        """Close the judge's connection pool and loop thread (only when the judge created its client)."""
        if self._owns_client:
            self.client.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LLMJudge(TemplatedLLMJudge, PointwiseRewardFunc):
    """Pointwise LLM judge ``(prefix, candidate, reference) → 0/1 | invalid``; a TRL reward function.

    Example::

        judge = LLMJudge.pointwise(base_url="http://127.0.0.1:30000", prompt="rlmt_reference_match")
        trainer = ThinkingGRPOTrainer(model=..., reward_funcs=[judge], args=..., train_dataset=rl_rows)
        judge.stats.invalid_rate  # invalid verdicts / calls so far

    Args:
        base_url: one endpoint or a list (spread round-robin by the client).
        prompt: packaged template name or a template file path; fields ``prefix``, ``reference``,
            ``candidate``.
        model: served model name (``--served-model-name default`` in docs/reference_run.md).
        mode: ``"chat"`` (instruct judges) or ``"completion"``.
        score_key, allowed_scores: what the reply must contain, e.g. ``{"score": 1}``.
        temperature, top_p, max_tokens: judge sampling (reference run: 0.7 / 0.6 / 64). A reply cut
            by ``max_tokens`` is invalid (``truncated``): leave room for the whole answer.
        max_field_chars: each field is clipped to this many characters: the prefix keeps its end,
            candidate and reference their start (``CLIP_SIDES``); ``None`` sends fields whole.
        request_extra: extra request body fields, e.g. ``{"chat_template_kwargs":
            {"enable_thinking": False}}`` for a Qwen3 judge.
        client: an existing :class:`OpenAICompatibleClient` (then the transport args are ignored).
        invalid_log_path: JSONL file to which every invalid verdict is appended with its raw reply.
    """

    __name__ = "llm_judge"

    def __init__(
        self,
        base_url: str | Sequence[str] | None = None,
        prompt: str | Path = "rlmt_reference_match",
        *,
        model: str = "default",
        mode: RequestMode = "chat",
        score_key: str = "score",
        allowed_scores: Sequence[float] = (0, 1),
        temperature: float = 0.7,
        top_p: float = 0.6,
        max_tokens: int = 64,
        max_field_chars: int | None = 2000,
        max_concurrency: int = 32,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        request_extra: dict[str, Any] | None = None,
        client: OpenAICompatibleClient | None = None,
        invalid_log_path: str | Path | None = None,
        name: str | None = None,
    ):
        super().__init__()
        self._init_llm(
            "LLMJudge",
            base_url,
            client,
            prompt,
            {"prefix", "reference", "candidate"},
            "pointwise judge template",
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
        self.score_key, self.allowed_scores = score_key, tuple(allowed_scores)
        if name:
            self.__name__ = name

    @classmethod
    def pointwise(
        cls,
        base_url: str | Sequence[str] | None = None,
        prompt: str | Path = "rlmt_reference_match",
        **kwargs: Any,
    ) -> LLMJudge:
        """The RLMT reference-match judge (the spelling used in the architecture docs)."""
        return cls(base_url=base_url, prompt=prompt, **kwargs)

    def parse_reply(self, text: str) -> tuple[float | None, str | None]:
        return parse_json_field(text, self.score_key, self.allowed_scores)

    async def ajudge(
        self, prefixes: Sequence[str], candidates: Sequence[str], references: Sequence[str]
    ) -> list[JudgeVerdict]:
        if not len(prefixes) == len(candidates) == len(references):
            raise ValueError(
                f"judge got {len(prefixes)} prefixes, {len(candidates)} candidates, "
                f"{len(references)} references"
            )
        items = [
            {"prefix": p, "reference": r, "candidate": c} for p, c, r in zip(prefixes, candidates, references)
        ]
        return await self._judge_items(items, {"candidate": 300})

    def judge(
        self, prefixes: Sequence[str], candidates: Sequence[str], references: Sequence[str]
    ) -> list[JudgeVerdict]:
        return self._run(lambda: self.ajudge(prefixes, candidates, references))
