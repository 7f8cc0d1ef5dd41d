"""The shared OpenAI-compatible client against a real local server and injected faults."""

import asyncio
import time

import pytest
from fault_server import Fault

from trl_ext.client import OpenAICompatibleClient, normalize_base_url, wait_until_ready


def run(coro):
    return asyncio.run(coro)


def test_real_server_completion_and_chat(openai_server):
    client = OpenAICompatibleClient(openai_server + "/v1", max_concurrency=4)

    async def go():
        results = await asyncio.gather(
            *[client.complete("The jury said", max_tokens=8, temperature=1.0, top_p=0.95) for _ in range(4)],
            client.chat([{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0.6),
        )
        await client.aclose()
        return results

    results = run(go())
    assert all(r.ok and isinstance(r.text, str) for r in results), [r.error for r in results]
    assert all(r.finish_reason in {"stop", "length"} and r.latency_s > 0 for r in results)
    assert all(0 < r.completion_tokens <= 8 for r in results)
    assert client.stats.succeeded == 5 and client.stats.failed == 0


def test_retries_recover_from_500_garbage_and_truncated_json(fault_server):
    url = fault_server(
        [Fault("http500"), Fault("garbage"), Fault("truncated_json"), Fault("ok", text="fine")]
    )
    client = OpenAICompatibleClient(url, max_retries=3, backoff_s=0.01)
    result = run(client.complete("x", max_tokens=4))
    assert result.ok and result.text == "fine" and result.attempts == 4
    assert client.stats.retries == 3 and set(client.stats.errors) == {"http 500", "malformed"}


def test_exhausted_retries_return_an_error_never_text(fault_server):
    url = fault_server([Fault("http500")])
    client = OpenAICompatibleClient(url, max_retries=2, backoff_s=0.01)
    result = run(client.chat([{"role": "user", "content": "x"}], max_tokens=4))
    assert not result.ok and result.text is None and "500" in result.error and result.attempts == 3
    assert client.stats.failed == 1


def test_timeouts_are_bounded(fault_server):
    url = fault_server([Fault("timeout", delay_s=3.0)])
    client = OpenAICompatibleClient(url, timeout_s=0.3, max_retries=1, backoff_s=0.01)
    start = time.perf_counter()
    result = run(client.complete("x", max_tokens=4))
    assert not result.ok and result.error.startswith("timeout") and time.perf_counter() - start < 2.5


def test_client_errors_are_not_retried(fault_server):
    url = fault_server([Fault("http400")])
    client = OpenAICompatibleClient(url, max_retries=3, backoff_s=0.01)
    result = run(client.complete("x", max_tokens=4))
    assert not result.ok and result.attempts == 1 and "400" in result.error


def test_concurrency_is_bounded_and_endpoints_are_spread(fault_server):
    slow = [Fault("ok", text="a", delay_s=0.2)]
    urls = [fault_server(slow), fault_server(slow)]
    client = OpenAICompatibleClient(urls, max_concurrency=2)

    async def go():
        return await asyncio.gather(*[client.complete("x", max_tokens=1) for _ in range(6)])

    start = time.perf_counter()
    results = run(go())
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results)
    assert elapsed >= 0.55  # 6 requests, 2 at a time, 0.2 s each
    assert {r.endpoint for r in results} == {normalize_base_url(u) for u in urls}
    assert [len(s.requests) for s in fault_server.servers] == [3, 3]


def test_wait_until_ready_names_what_it_saw(fault_server):
    url = fault_server([Fault("ok")])
    wait_until_ready(url, "default", timeout_s=5)
    with pytest.raises(TimeoutError, match="not 'other'"):
        wait_until_ready(url, "other", timeout_s=1, poll_s=0.2)
