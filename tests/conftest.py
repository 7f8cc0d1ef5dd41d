"""Shared fixtures: the embedded default (real Qwen3 tokenizer, tiny Qwen3 model) and servers.

No test touches the Hugging Face Hub or any address but 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXT_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "trl_ext"))

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_server import Fault, FaultServer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def embedded():
    """The embedded default, fetched if needed (``make test`` fetches it before pytest)."""
    from trl_ext.assets import fetch

    return fetch()


@pytest.fixture(scope="session")
def qwen_tokenizer(embedded):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded.tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(embedded) -> Path:
    return embedded.model_dir


@pytest.fixture(scope="session")
def openai_server(tiny_model_dir):
    """A real OpenAI-compatible server for the tiny model (``transformers serve --continuous-batching``,
    as ``make eval`` runs on CPU); base URL. Its continuous batching fixes the sampling mode at the
    first request, so one sampled warm-up request goes first (then tests at any temperature sample,
    whatever order they run in; a test that needs greedy decoding starts its own server)."""
    import httpx

    from eval.serving import launch_server

    sampling = {"temperature": 1.0, "top_p": 1.0}
    with launch_server(tiny_model_dir, "transformers", ready_timeout_s=180, sampling=sampling) as handle:
        body = {"model": "default", "prompt": "warm-up", "max_tokens": 1, "temperature": 1.0, "top_p": 1.0}
        httpx.post(handle.base_url + "/v1/completions", json=body, timeout=120).raise_for_status()
        yield handle.base_url


@pytest.fixture
def fault_server():
    """Factory: ``fault_server([Fault("http500"), Fault("ok", text="...")])`` → base URL."""
    servers: list[FaultServer] = []

    def start(script: list[Fault]) -> str:
        server = FaultServer(script).__enter__()
        servers.append(server)
        start.servers = servers
        return server.base_url

    start.servers = servers
    yield start
    for server in servers:
        server.__exit__(None, None, None)


__all__ = ["Fault", "REPO_ROOT"]
