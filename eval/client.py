"""The eval client: k samples per problem fanned out as k single-sample requests.

Built on :class:`trl_ext.client.OpenAICompatibleClient` (bounded concurrency, timeouts,
retries with backoff, several endpoints), so it works unchanged against SGLang on a GPU and
``transformers serve`` on CPU, including servers that silently ignore ``n`` (``transformers serve``).
Adds a progress bar with samples/s and generated tokens/s, and a per-result callback so the
caller can persist each sample the moment it arrives (that is what makes resume exact).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from eval.benchmarks.base import SampleRequest
from trl_ext.client import GenerationResult, OpenAICompatibleClient


@dataclass
class SamplingConfig:
    """Sampling parameters sent with every request (docs/method.md §6 defaults)."""

    max_tokens: int = 512
    temperature: float = 0.6
    top_p: float = 0.95
    use_stop: bool = True  # raw mode: stop at the next "Problem:" (the reference run had no stop)
    extra: dict = field(default_factory=dict)  # passed through, e.g. {"chat_template_kwargs": {...}}


@dataclass
class Throughput:
    """What the progress bar shows, kept for the run summary."""

    samples: int = 0
    failed: int = 0
    completion_tokens: int = 0
    elapsed_s: float = 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "samples": self.samples,
            "failed": self.failed,
            "completion_tokens": self.completion_tokens,
            "elapsed_s": round(self.elapsed_s, 3),
            "samples_per_s": round(self.samples_per_s, 3),
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


def apply_stop(result: GenerationResult, stop: Sequence[str] | None) -> GenerationResult:
    """Cut the text at the first stop string, as SGLang and vLLM do server-side.

    ``transformers serve --continuous-batching`` ignores ``stop``; without this cut a few-shot
    run-on ("Problem: ..." after the answer) would reach the grader. ``completion_tokens`` stays
    the server's count (what was generated, and paid for)."""
    if not stop or result.text is None:
        return result
    cut = min((i for i in (result.text.find(s) for s in stop if s) if i != -1), default=-1)
    if cut == -1:
        return result
    return dataclasses.replace(result, text=result.text[:cut], finish_reason="stop")


OnResult = Callable[[SampleRequest, GenerationResult], Awaitable[None]]


class EvalClient:
    """Fan-out generation for the suite.

    Example::

        client = EvalClient(["http://127.0.0.1:30000"], max_concurrency=32)
        stats = asyncio.run(client.generate(requests, SamplingConfig(), on_result=save))
    """

    def __init__(
        self,
        base_urls: str | Sequence[str],
        model: str = "default",
        max_concurrency: int = 32,
        timeout_s: float = 180.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        progress: bool = True,
    ):
        self.client = OpenAICompatibleClient(
            base_urls,
            model=model,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
        )
        self.progress = progress

    @property
    def stats(self):
        return self.client.stats

    async def one(self, request: SampleRequest, sampling: SamplingConfig) -> GenerationResult:
        params = {
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        params.update(sampling.extra)
        if sampling.use_stop and request.stop:
            params["stop"] = request.stop
        if request.messages is not None:
            result = await self.client.chat(request.messages, **params)
        else:
            result = await self.client.complete(request.prompt, **params)
        return apply_stop(result, params.get("stop"))

    async def generate(
        self,
        requests: Sequence[SampleRequest],
        sampling: SamplingConfig,
        on_result: OnResult | None = None,
        desc: str = "samples",
    ) -> Throughput:
        """Send every request (one sample each) and await ``on_result`` as each finishes."""
        meter = Throughput()
        start = time.perf_counter()
        bar = tqdm(
            total=len(requests), desc=desc, unit="sample", disable=not self.progress, dynamic_ncols=True
        )

        async def run(request: SampleRequest) -> None:
            result = await self.one(request, sampling)
            if on_result is not None:
                await on_result(request, result)
            meter.samples += 1
            meter.failed += not result.ok
            meter.completion_tokens += result.completion_tokens or 0
            meter.elapsed_s = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(
                {
                    "samples/s": f"{meter.samples_per_s:.2f}",
                    "tok/s": f"{meter.tokens_per_s:.1f}",
                    "failed": meter.failed,
                },
                refresh=False,
            )

        try:
            # The underlying client's semaphore bounds in-flight requests; tasks beyond it wait.
            await asyncio.gather(*(run(r) for r in requests))
        finally:
            bar.close()
            meter.elapsed_s = time.perf_counter() - start
        return meter

    async def aclose(self) -> None:
        await self.client.aclose()
