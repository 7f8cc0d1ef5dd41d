"""Serving: SGLang flags, and `make eval`'s path (serve → suite → report → stop by PID)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO_ROOT

from eval.serving import SGLANG_DEFAULT_ARGS, merge_server_args, server_command


def test_sglang_command_has_the_seed_flags_and_overrides():
    cmd, workdir = server_command(
        Path("/models/m"), "sglang", "127.0.0.1", 30000, ["--mem-fraction-static=0.8"]
    )
    assert workdir is None and cmd[1:3] == ["-m", "sglang.launch_server"]
    joined = " ".join(cmd)
    for flag in ("--served-model-name default", "--cuda-graph-max-bs 32", "--num-continuous-decode-steps 16",
                 "--schedule-policy lpm"):  # fmt: skip
        assert flag in joined
    assert "--mem-fraction-static=0.8" in cmd and "0.70" not in cmd


def test_merge_server_args():
    merged = merge_server_args(
        SGLANG_DEFAULT_ARGS, ["--schedule-policy", "fcfs", "--tp", "2", "--enable-metrics"]
    )
    assert merged.count("--schedule-policy") == 1 and merged[merged.index("--schedule-policy") + 1] == "fcfs"
    assert merged[-5:] == ["--schedule-policy", "fcfs", "--tp", "2", "--enable-metrics"]
    assert "--cuda-graph-max-bs" in merged
    with pytest.raises(ValueError, match="served-model-name"):
        merge_server_args(SGLANG_DEFAULT_ARGS, ["--served-model-name", "x"])


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_make_eval_path_end_to_end(tmp_path):
    """What `make eval ARM=base` runs: serve the embedded tiny model, run the demo suite, report."""
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "eval", "suite", "--arm", "base", "--out", str(out), "--limit", "3",
           "--num-samples", "2", "--max-tokens", "8", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "preset=demo" in result.stdout and "| base | GSM8K |" in result.stdout
    pid = int(re.search(r"server: transformers pid (\d+)", result.stdout).group(1))
    assert not _pid_alive(pid)
    summary = json.loads((out / "base" / "summary.json").read_text())
    assert summary["complete"] and summary["benchmarks"]["gsm8k"]["num_samples"] == 6
    for name in ("report.md", "report.json", "plots/mean_at_k.png", "plots/pass_at_k_any.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "base" / "server.log").exists()


@pytest.mark.slow
def test_serve_stops_the_server_on_sigterm(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "eval",
        "serve",
        "--arm",
        "base",
        "--server-log",
        str(tmp_path / "server.log"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline, line = time.monotonic() + 300, ""
        while time.monotonic() < deadline and "serving" not in line:
            line = process.stdout.readline()
            assert line or process.poll() is None, "eval serve exited before the server was ready"
        pid = int(re.search(r"\(pid (\d+)\)", line).group(1))
        assert _pid_alive(pid)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert not _pid_alive(pid)
    finally:
        if process.poll() is None:
            process.kill()


def test_cpu_server_batches_and_samples(tmp_path):
    """The CPU command uses continuous batching with a bounded KV cache, and the served directory
    makes the model sample (its own generation config says greedy)."""
    from eval.serving import served_model_dir

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps(
            {
                "num_hidden_layers": 28,
                "num_attention_heads": 16,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "hidden_size": 1024,
            }
        )  # Qwen3-0.6B's shape  # fmt: skip
    )
    (model / "generation_config.json").write_text(json.dumps({"do_sample": False, "eos_token_id": 1}))
    cmd, workdir = server_command(model, "transformers", "127.0.0.1", 8000, ["--cb-num-blocks", "8"])
    try:
        assert cmd[1:4] == ["-m", "eval.cpu_server", "serve"]  # transformers serve + the sort-free sampler
        assert "--continuous-batching" in cmd and cmd[cmd.index("--cb-num-blocks") + 1] == "8"
        assert cmd.count("--cb-num-blocks") == 1 and "--cb-max-batch-tokens" in cmd
        served = json.loads((workdir / "default" / "generation_config.json").read_text())
        assert served == {"do_sample": True, "eos_token_id": 1}
        assert (workdir / "default" / "config.json").resolve() == (model / "config.json").resolve()
    finally:
        import shutil

        shutil.rmtree(workdir)
    served = served_model_dir(model, tmp_path, {"temperature": 0.6, "top_p": 0.95})
    assert json.loads((served / "generation_config.json").read_text())["temperature"] == 0.6
    from eval.serving import cb_num_blocks

    assert cb_num_blocks(model) == 36  # 2 GiB of fp32 KV cache for Qwen3-0.6B: 36 pages of 256 tokens


@pytest.mark.slow
def test_suite_sigkill_takes_the_server_and_its_temp_dir_with_it(tmp_path):
    """SIGKILL of `python -m eval suite` (no finally, no atexit) must not leave the server running
    on its port nor its temporary serving directory behind."""
    import socket

    cmd = [sys.executable, "-m", "eval", "suite", "--arm", "base", "--out", str(tmp_path / "eval"),
           "--limit", "16", "--num-samples", "4", "--max-tokens", "64", "--no-progress",
           "--no-report"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline, line = time.monotonic() + 300, ""
        while time.monotonic() < deadline and not line.startswith("server:"):
            line = process.stdout.readline()
            assert line or process.poll() is None, "eval suite exited before its server was ready"
        match = re.search(r"pid (\d+) \(server pid (\d+), workdir (\S+)\) at http://127\.0\.0\.1:(\d+)", line)
        guard, server, workdir, port = int(match[1]), int(match[2]), Path(match[3]), int(match[4])
        assert _pid_alive(guard) and _pid_alive(server) and workdir.is_dir()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (_pid_alive(server) or _pid_alive(guard) or workdir.exists()):
            time.sleep(0.2)
        assert not _pid_alive(server), "the model server outlived its parent"
        assert not _pid_alive(guard) and not workdir.exists(), "the serving temp dir leaked"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # the port is free again
    finally:
        if process.poll() is None:
            process.kill()


def test_cpu_server_samples_concurrent_requests(openai_server):
    """Four identical prompts at once through the batched server: sampled, so not all the same (a
    greedy server, the tiny model's own default, would return four identical texts)."""
    texts = _complete_all(openai_server, ["The river"] * 4, concurrency=4, temperature=1.0, top_p=1.0)
    assert len(set(texts)) > 1


def _complete_all(base_url: str, prompts: list[str], concurrency: int, **sampling) -> list[str]:
    import asyncio

    from trl_ext.client import OpenAICompatibleClient

    async def go():
        client = OpenAICompatibleClient(base_url, max_concurrency=concurrency, timeout_s=120)
        try:
            return await asyncio.gather(*[client.complete(p, max_tokens=12, **sampling) for p in prompts])
        finally:
            await client.aclose()

    results = asyncio.run(go())
    assert all(r.ok and r.completion_tokens for r in results), [r.error for r in results]
    return [r.text for r in results]


def test_cpu_server_samples_with_the_sort_free_sampler(tiny_model_dir, tmp_path):
    """The CPU server takes the run's temperature and top-p into eval.nucleus_sampling (it says so
    in its log) and still samples: identical concurrent prompts give different texts."""
    from eval.cpu_server import INSTALLED_MESSAGE
    from eval.serving import launch_server

    sampling = {"temperature": 0.6, "top_p": 0.95}
    log = tmp_path / "server.log"
    with launch_server(tiny_model_dir, "transformers", sampling=sampling, log_path=log) as handle:
        texts = _complete_all(handle.base_url, ["The river"] * 4, concurrency=4, **sampling)
    assert len(set(texts)) > 1
    assert f"{INSTALLED_MESSAGE} ({{'top_p': 0.95, 'temperature': 0.6}})" in log.read_text()


@pytest.mark.slow
def test_sort_free_sampler_and_stock_server_agree_when_top_p_leaves_one_token(tiny_model_dir, tmp_path):
    """With a nucleus of one token both samplers must return the argmax at every step: the same
    texts from our server and from transformers' own sampler (``--stock-sampling``)."""
    from eval.cpu_server import INSTALLED_MESSAGE
    from eval.serving import launch_server

    sampling = {"temperature": 0.6, "top_p": 1e-9}
    prompts = ["The river", "Problem: 3 + 4 =", "Once upon a time"]
    texts, logs = {}, {}
    for stock in (False, True):
        logs[stock] = tmp_path / f"server-{stock}.log"
        with launch_server(
            tiny_model_dir, "transformers", sampling=sampling, log_path=logs[stock], stock_sampling=stock
        ) as handle:
            texts[stock] = _complete_all(handle.base_url, prompts, concurrency=1, **sampling)
    assert texts[False] == texts[True]
    assert INSTALLED_MESSAGE in logs[False].read_text() and INSTALLED_MESSAGE not in logs[True].read_text()
