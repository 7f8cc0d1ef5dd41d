"""Async client for OpenAI-compatible servers (SGLang in production, ``transformers serve`` on CPU).

Judges, the teacher and the eval suite all talk to servers through this one class, so bounded
concurrency, timeouts, retries with backoff, load spreading over several endpoints and
failure accounting behave the same everywhere. A request that still fails after its retries
returns a :class:`GenerationResult` with ``error`` set and ``text=None``: callers count it as
invalid; nothing here ever invents text or raises for a server fault.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def normalize_base_url(url: str) -> str:
    """Accept ``http://host:port``, ``http://host:port/`` and ``http://host:port/v1`` alike."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


@dataclass
class GenerationResult:
    """One request's outcome. ``text`` is None exactly when the request failed."""

    text: str | None
    finish_reason: str | None = None
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    latency_s: float = 0.0
    attempts: int = 0
    endpoint: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ClientStats:
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    completion_tokens: int = 0
    errors: Counter = field(default_factory=Counter)


class _RetryableError(Exception):
    pass


class OpenAICompatibleClient:
    """Completions and chat completions with bounded concurrency and retries.

    Example::

        client = OpenAICompatibleClient(["http://127.0.0.1:30000"], max_concurrency=32)
        result = await client.complete("The capital of France is", max_tokens=8, temperature=0.0)
    """

    def __init__(
        self,
        base_urls: str | Sequence[str],
        model: str = "default",
        max_concurrency: int = 32,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        api_key: str | None = None,
    ):
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("OpenAICompatibleClient needs at least one base URL")
        self.base_urls = [normalize_base_url(u) for u in urls]
        self.model = model
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.stats = ClientStats()
        self._endpoints = itertools.cycle(range(len(self.base_urls)))
        self._semaphore: asyncio.Semaphore | None = None
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session(self) -> tuple[asyncio.Semaphore, httpx.AsyncClient]:
        # Semaphores and connection pools are bound to one event loop; a client reused across
        # ``asyncio.run`` calls (a trainer calls the judge once per step) gets fresh ones.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            limits = httpx.Limits(
                max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
            )
            self._http = httpx.AsyncClient(timeout=self.timeout_s, limits=limits, headers=self.headers)
        return self._semaphore, self._http

    async def complete(
        self, prompt: str | list[int], *, max_tokens: int, **sampling: Any
    ) -> GenerationResult:
        """``POST /v1/completions`` with one sample (fan out k samples as k calls)."""
        payload = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, **_drop_none(sampling)}
        return await self._request("/v1/completions", payload, chat=False)

    async def chat(self, messages: list[dict], *, max_tokens: int, **sampling: Any) -> GenerationResult:
        """``POST /v1/chat/completions`` with one sample."""
        payload = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            **_drop_none(sampling),
        }
        return await self._request("/v1/chat/completions", payload, chat=True)

    async def _request(self, route: str, payload: dict, chat: bool) -> GenerationResult:
        semaphore, http = self._session()
        self.stats.requests += 1
        start, error, attempts = time.perf_counter(), "not attempted", 0
        async with semaphore:
            for attempt in range(self.max_retries + 1):
                attempts = attempt + 1
                endpoint = self.base_urls[next(self._endpoints)]
                try:
                    result = await self._once(http, endpoint + route, payload, chat)
                except _RetryableError as err:
                    error = str(err)
                    self.stats.errors[error.split(":")[0]] += 1
                    if attempt < self.max_retries:
                        self.stats.retries += 1
                        await asyncio.sleep(self.backoff_s * 2**attempt)
                    continue
                result.latency_s, result.attempts, result.endpoint = (
                    time.perf_counter() - start,
                    attempts,
                    endpoint,
                )
                self.stats.succeeded += 1
                self.stats.completion_tokens += result.completion_tokens or 0
                return result
        self.stats.failed += 1
        return GenerationResult(
            text=None, latency_s=time.perf_counter() - start, attempts=attempts, error=error
        )

    async def _once(self, http: httpx.AsyncClient, url: str, payload: dict, chat: bool) -> GenerationResult:
        try:
            response = await http.post(url, json=payload)
        except httpx.TimeoutException:
            raise _RetryableError(f"timeout: no answer from {url} within {self.timeout_s}s") from None
        except httpx.HTTPError as err:
            raise _RetryableError(f"connection: {type(err).__name__}: {err}") from None
        if response.status_code in RETRYABLE_STATUS:
            raise _RetryableError(f"http {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            # A 4xx other than the retryable ones is our request's fault: retrying cannot help.
            return GenerationResult(text=None, error=f"http {response.status_code}: {response.text[:500]}")
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
            if not isinstance(text, str):
                raise TypeError(f"text is {type(text).__name__}")
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
            raise _RetryableError(f"malformed: {type(err).__name__}: {response.text[:200]!r}") from None
        usage = body.get("usage") or {}
        return GenerationResult(
            text=text,
            finish_reason=choice.get("finish_reason"),
            completion_tokens=usage.get("completion_tokens"),
            prompt_tokens=usage.get("prompt_tokens"),
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http, self._loop = None, None


def _drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def wait_until_ready(
    base_url: str, model: str | None = "default", timeout_s: float = 180.0, poll_s: float = 0.5
) -> None:
    """Block until ``/health`` answers 200 (SGLang: 503 while warming up) and ``/v1/models`` lists
    ``model``; raise ``TimeoutError`` naming what was last seen."""
    base = normalize_base_url(base_url)
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            health = httpx.get(base + "/health", timeout=5)
            if health.status_code == 200 or health.status_code == 404:  # some servers lack /health
                models = httpx.get(base + "/v1/models", timeout=5)
                if models.status_code == 200:
                    ids = [m.get("id") for m in models.json().get("data", [])]
                    if model is None or model in ids:
                        return
                    last = f"/v1/models lists {ids}, not {model!r}"
                else:
                    last = f"/v1/models answered {models.status_code}"
            else:
                last = f"/health answered {health.status_code}"
        except (httpx.HTTPError, ValueError) as err:
            last = f"{type(err).__name__}: {err}"
        time.sleep(poll_s)
    raise TimeoutError(f"server at {base} not ready after {timeout_s:.0f}s ({last})")
