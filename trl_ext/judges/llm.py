"""LLM judges over any OpenAI-compatible endpoint (SGLang in production, ``transformers serve`` on CPU).

Transport (bounded concurrency, timeouts, retries with backoff, several endpoints round-robin)
is :class:`trl_ext.client.OpenAICompatibleClient`'s job; this module renders prompts, fans out
one request per item, and parses replies strictly. A call that fails after its retries, or a
reply that does not parse, is an invalid :class:`~trl_ext.judges.base.JudgeVerdict`: counted in
``judge.stats``, logged with the raw reply, returned to TRL as ``None`` (excluded from the group),
never turned into a score.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from trl_ext.client import GenerationResult, OpenAICompatibleClient
from trl_ext.judges.base import (
    JudgeVerdict,
    PointwiseRewardFunc,
    PromptTemplate,
    load_prompt_template,
    parse_json_field,
)

T = TypeVar("T")
RequestMode = Literal["chat", "completion"]


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


def clip(text: str, max_chars: int | None) -> str:
    """Bound what the judge reads (the reference run used 2000 characters per field)."""
    return text if max_chars is None or len(text) <= max_chars else text[:max_chars]


class LLMJudge(PointwiseRewardFunc):
    """Pointwise LLM judge ``(prefix, candidate, reference) → 0/1 | invalid``; a TRL reward function.

    Example::

        judge = LLMJudge.pointwise(base_url="http://127.0.0.1:30000", prompt="rlmt_reference_match")
        trainer = ThinkingGRPOTrainer(model=..., reward_funcs=[judge], args=..., train_dataset=rl_rows)
        judge.stats.invalid_rate  # invalid verdicts / calls so far

    Args:
        base_url: one endpoint or a list (spread round-robin by the client).
        prompt: packaged template name or a template file path; fields ``prefix``, ``reference``,
            ``candidate``.
        model: served model name (``--served-model-name default`` in the seed setup).
        mode: ``"chat"`` (instruct judges) or ``"completion"``.
        score_key, allowed_scores: what the reply must contain, e.g. ``{"score": 1}``.
        temperature, top_p, max_tokens: judge sampling (seed: 0.7 / 0.6 / 64).
        max_field_chars: each field is clipped to this many characters.
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
        if client is None and base_url is None:
            raise ValueError("LLMJudge needs base_url (one URL or a list) or an OpenAICompatibleClient")
        self.client = client or OpenAICompatibleClient(
            base_url, model=model, max_concurrency=max_concurrency, timeout_s=timeout_s,
            max_retries=max_retries, backoff_s=backoff_s,
        )  # fmt: skip
        self.template = load_prompt_template(prompt)
        needed = {"prefix", "reference", "candidate"}
        if self.template.fields != needed:
            raise ValueError(
                f"pointwise judge template {self.template.name!r} must use exactly {sorted(needed)}, "
                f"uses {sorted(self.template.fields)}"
            )
        self.mode = mode
        self.score_key, self.allowed_scores = score_key, tuple(allowed_scores)
        self.sampling = {"temperature": temperature, "top_p": top_p, **(request_extra or {})}
        self.max_tokens, self.max_field_chars = max_tokens, max_field_chars
        self.stats.invalid_log_path = invalid_log_path
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

    def verdict_from_result(self, result: GenerationResult) -> JudgeVerdict:
        if not result.ok or result.text is None:
            return JudgeVerdict.invalid(
                f"call_failed: {result.error}", raw=result.text, latency_s=result.latency_s
            )
        score, error = parse_json_field(result.text, self.score_key, self.allowed_scores)
        if error is not None:
            return JudgeVerdict.invalid(error, raw=result.text, latency_s=result.latency_s)
        return JudgeVerdict(score=float(score), raw=result.text, latency_s=result.latency_s)

    async def ajudge(
        self, prefixes: Sequence[str], candidates: Sequence[str], references: Sequence[str]
    ) -> list[JudgeVerdict]:
        if not len(prefixes) == len(candidates) == len(references):
            raise ValueError(
                f"judge got {len(prefixes)} prefixes, {len(candidates)} candidates, "
                f"{len(references)} references"
            )
        items = [
            {"prefix": clip(p, self.max_field_chars), "reference": clip(r, self.max_field_chars),
             "candidate": clip(c, self.max_field_chars)}
            for p, c, r in zip(prefixes, candidates, references)
        ]  # fmt: skip
        results = await batch_generate(
            self.client, self.template, items, mode=self.mode, max_tokens=self.max_tokens, **self.sampling
        )
        verdicts = [self.verdict_from_result(r) for r in results]
        for index, verdict in enumerate(verdicts):
            self.stats.record(verdict, {"index": index, "candidate": items[index]["candidate"][:300]})
        return verdicts

    def judge(
        self, prefixes: Sequence[str], candidates: Sequence[str], references: Sequence[str]
    ) -> list[JudgeVerdict]:
        async def judge_then_close() -> list[JudgeVerdict]:
            # Each sync call runs its own event loop; close the connection pool with it so no
            # connection outlives the loop it was opened on.
            try:
                return await self.ajudge(prefixes, candidates, references)
            finally:
                await self.client.aclose()

        return run_sync(judge_then_close())
