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
