"""Async client for OpenAI-compatible servers (SGLang in production, ``transformers serve`` on CPU).

Judges, the teacher and the eval suite all talk to servers through this one class, so bounded
concurrency, timeouts, retries with backoff, load spreading over several endpoints and
failure accounting behave the same everywhere. A request that still fails after its retries
returns a :class:`GenerationResult` with ``error`` set and ``text=None``: callers count it as
invalid; nothing here ever invents text or raises for a server fault. ``finish_reason`` comes
back with the text, so a caller can tell a reply cut by ``max_tokens`` (``"length"``) from a
finished one.

Two ways to use a client:

* **async** (eval, augmentation): ``await client.chat(...)`` inside your own event loop, then
  ``await client.aclose()`` before that loop ends. Each event loop gets its own semaphore and
  connection pool (asyncio objects cannot cross loops).
* **sync** (judges, called by a trainer once per step): ``client.run(coro)`` runs the coroutine on
  the client's own long-lived event loop thread, so every call of the whole run shares one
  semaphore and one connection pool (keep-alive connections are reused step after step).
  ``client.close()`` (or ``with client:``, or interpreter exit) stops that thread and closes the
  pool.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
T = TypeVar("T")


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
    pools_opened: int = 0  # connection pools created (one per event loop the client is used on)
    connections_opened: int = 0  # TCP connections opened (keep-alive reuse keeps this small)


class _RetryableError(Exception):
    pass


@dataclass
class _Session:
    """What is bound to one event loop: the concurrency bound and the connection pool."""

    semaphore: asyncio.Semaphore
    http: httpx.AsyncClient


class _LoopThread:
    """A private event loop on a daemon thread, for sync callers of one client.

    Why a loop thread and not a sync ``httpx.Client`` with a thread pool: a judge fans out hundreds of
    requests per step (17 candidates → 136 pairwise calls per prefix), which asyncio runs as cheap tasks
    on one thread with one retry/backoff implementation shared with the async callers; a thread per
    in-flight request would duplicate the transport code and cost a thread each. TRL's GRPOTrainer runs
    async reward functions on a daemon event loop the same way.
    """

    def __init__(self, name: str):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.pid == os.getpid() and not self.loop.is_closed() and self.thread.is_alive()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("OpenAICompatibleClient.run called from the client's own loop: await instead")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:  # Ctrl-C while waiting: do not leave the requests running
            future.cancel()
            raise

    def stop(self) -> None:
        if self.pid != os.getpid() or self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


_OPEN_CLIENTS: weakref.WeakSet[OpenAICompatibleClient] = weakref.WeakSet()


@atexit.register
def _close_open_clients() -> None:
    """Close every client that still runs a loop thread, so connections end cleanly at exit."""
    for client in list(_OPEN_CLIENTS):
        client.close()


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
        # Semaphores and connection pools are bound to one event loop: one session per loop.
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Session] = (
            weakref.WeakKeyDictionary()
        )
        self._runner: _LoopThread | None = None

    def _session(self) -> _Session:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None:
            limits = httpx.Limits(
                max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
            )
            http = httpx.AsyncClient(timeout=self.timeout_s, limits=limits, headers=self.headers)
            session = self._sessions[loop] = _Session(asyncio.Semaphore(self.max_concurrency), http)
            self.stats.pools_opened += 1
        return session

    @property
    def pool(self) -> httpx.AsyncClient | None:
        """The connection pool of the client's own loop (the one :meth:`run` uses), if open."""
        runner = self._runner
        session = self._sessions.get(runner.loop) if runner is not None and runner.alive else None
        return session.http if session is not None else None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine that uses this client on the client's own event loop thread and return
        its result: the sync entry point. All sync calls share one loop, hence one pool, for the
        client's life; safe to call from any thread, also from inside another running event loop."""
        runner = self._runner
        if runner is None or not runner.alive:  # first call, after close(), or in a forked child
            runner = self._runner = _LoopThread(name=f"trl_ext-client-{self.base_urls[0]}")
            weakref.finalize(self, runner.stop)  # a client dropped without close() still ends its thread
            _OPEN_CLIENTS.add(self)
        return runner.call(coro)

    def close(self) -> None:
        """Close the pool of the client's own loop and stop its thread (idempotent; a later
        :meth:`run` opens a fresh one). Async users close their own loop's pool with :meth:`aclose`."""
        runner, self._runner = self._runner, None
        _OPEN_CLIENTS.discard(self)
        if runner is None or not runner.alive:
            return
        try:
            runner.call(self.aclose())
        finally:
            runner.stop()

    def __getstate__(self) -> dict[str, Any]:
        # A copy (deepcopy, pickle to a worker) gets its own loop and pool on first use; threads,
        # loops and sockets cannot be copied.
        state = self.__dict__.copy()
        del state["_runner"], state["_sessions"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _runner=None, _sessions=weakref.WeakKeyDictionary())

    def __enter__(self) -> OpenAICompatibleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _trace(self, event: str, info: dict) -> None:
        # httpcore reports each new TCP connection; counting them shows keep-alive reuse.
        if event == "connection.connect_tcp.complete":
            self.stats.connections_opened += 1

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
        session = self._session()
        http = session.http
        self.stats.requests += 1
        start, error, attempts = time.perf_counter(), "not attempted", 0
        async with session.semaphore:
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
            response = await http.post(url, json=payload, extensions={"trace": self._trace})
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
            if text is None and choice.get("finish_reason") == "length":
                # A server with a reasoning parser returns no content when the limit cut the reasoning.
                text = ""
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
        """Close the connection pool of the running event loop (async users, before their loop ends)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.http.aclose()

    def wait_until_ready(self, timeout_s: float = 180.0, poll_s: float = 0.5) -> None:
        """Block until every base URL serves ``self.model`` (one deadline for all of them, since the
        servers start in parallel); ``TimeoutError`` naming the first URL that is not ready."""
        deadline = time.monotonic() + timeout_s
        for url in self.base_urls:
            _wait_for(url, self.model, deadline, poll_s, timeout_s)


def _drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def wait_until_ready(
    base_url: str, model: str | None = "default", timeout_s: float = 180.0, poll_s: float = 0.5
) -> None:
    """Block until ``/health`` answers 200 (SGLang: 503 while warming up) and ``/v1/models`` lists
    ``model``; raise ``TimeoutError`` naming the URL and what was last seen. At least one attempt is
    made, and no single request outlives the deadline by more than a second."""
    _wait_for(base_url, model, time.monotonic() + timeout_s, poll_s, timeout_s)


def _wait_for(base_url: str, model: str | None, deadline: float, poll_s: float, timeout_s: float) -> None:
    base, last = normalize_base_url(base_url), "no answer"
    while True:
        request_timeout = min(5.0, max(deadline - time.monotonic(), 1.0))
        try:
            health = httpx.get(base + "/health", timeout=request_timeout)
            if health.status_code == 200 or health.status_code == 404:  # some servers lack /health
                models = httpx.get(base + "/v1/models", timeout=request_timeout)
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
        if time.monotonic() + poll_s >= deadline:
            break
        time.sleep(poll_s)
    raise TimeoutError(
        f"server at {base} not ready within {timeout_s:g}s: {last}. "
        "Is the server running, and are the URL and served model name right?"
    )
