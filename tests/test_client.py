"""The shared OpenAI-compatible client against a real local server and injected faults."""

import asyncio
import copy
import json
import pickle
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def _dead_url() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_wait_until_ready_on_a_dead_port_fails_fast_naming_the_url(fault_server):
    dead = _dead_url()
    start = time.perf_counter()
    with pytest.raises(
        TimeoutError, match=f"server at {dead} not ready.*ConnectError.*Is the server running"
    ):
        wait_until_ready(dead + "/v1", timeout_s=0.3, poll_s=0.1)
    assert time.perf_counter() - start < 3.0
    # All of a client's endpoints share one deadline; the error names the one that is down.
    client = OpenAICompatibleClient([fault_server([Fault("ok")]), dead])
    with pytest.raises(TimeoutError, match=f"server at {dead} not ready"):
        client.wait_until_ready(timeout_s=0.5, poll_s=0.1)


def test_finish_reason_comes_back_with_the_text(fault_server):
    url = fault_server(
        [Fault("ok", text="cut mid", finish_reason="length"), Fault("ok", text="done", finish_reason="stop")]
    )
    client = OpenAICompatibleClient(url, max_retries=0)
    with client:
        cut = client.run(client.complete("x", max_tokens=2))
        done = client.run(client.chat([{"role": "user", "content": "x"}], max_tokens=2))
    assert (cut.text, cut.finish_reason) == ("cut mid", "length")
    assert (done.text, done.finish_reason) == ("done", "stop")


def test_no_content_because_the_limit_cut_the_reasoning_is_a_truncated_reply():
    """A server with a reasoning parser returns ``content: null`` when max_tokens ends the reasoning:
    that is an (empty) reply cut by the limit, not a malformed body to retry."""
    body = {
        "choices": [{"message": {"content": None, "reasoning_content": "hmm"}, "finish_reason": "length"}]
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = OpenAICompatibleClient(f"http://127.0.0.1:{server.server_address[1]}", max_retries=2)
        result = client.run(client.chat([{"role": "user", "content": "x"}], max_tokens=2))
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok and result.text == "" and result.finish_reason == "length" and result.attempts == 1


def test_sync_calls_share_one_loop_and_one_pool(fault_server):
    url = fault_server([Fault("ok", text="a")])
    client = OpenAICompatibleClient(url, max_concurrency=3)

    async def fan_out():
        return await asyncio.gather(*[client.complete("x", max_tokens=1) for _ in range(3)])

    pools = []
    for _ in range(4):  # e.g. four trainer steps
        assert all(r.ok for r in client.run(fan_out()))
        pools.append(client.pool)
    assert pools[0] is not None and all(p is pools[0] for p in pools) and client.stats.pools_opened == 1
    for copied in (copy.deepcopy(client), pickle.loads(pickle.dumps(client))):  # threads are not copied
        assert copied.pool is None and copied.run(copied.complete("x", max_tokens=1)).ok
        assert copied.pool is not pools[0]
        copied.close()
    client.close()
    assert pools[0].is_closed and client.pool is None
    client.close()  # idempotent

    async def own_loop():  # async users keep their own loop's pool and close it themselves
        result = await client.complete("x", max_tokens=1)
        await client.aclose()
        return result

    assert run(own_loop()).ok and client.stats.pools_opened == 2
