"""Start an OpenAI-compatible inference server for a model directory and stop it by PID.

On a GPU machine the server is SGLang (``python -m sglang.launch_server``); where SGLang
cannot run (CPU machines: it is CUDA-only on PyPI) it is ``transformers serve``. Both are
served under the model name ``default`` so the client code is identical. The server always
runs in its own process group and is stopped by PID — on success, error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trl_ext.client import wait_until_ready

SERVED_MODEL_NAME = "default"
# The seed's SGLang flags (RLMT_RESULTS.md "Serving flags"); every one can be overridden.
SGLANG_DEFAULT_ARGS = (
    "--cuda-graph-max-bs", "32",
    "--num-continuous-decode-steps", "16",
    "--schedule-policy", "lpm",
    "--mem-fraction-static", "0.70",
)  # fmt: skip


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def pick_backend(requested: str = "auto") -> str:
    """``sglang`` when it is installed and a CUDA device is visible, else ``transformers``."""
    if requested != "auto":
        return requested
    if importlib.util.find_spec("sglang") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                return "sglang"
        except ImportError:
            pass
    return "transformers"


@dataclass
class ServerHandle:
    """A running server: where it listens and how to stop it."""

    base_url: str
    pid: int
    backend: str
    log_path: Path
    command: list[str] = field(default_factory=list)


def _flag_groups(args: Sequence[str]) -> list[list[str]]:
    """``["--a", "1", "--flag", "--b=2"]`` → ``[["--a", "1"], ["--flag"], ["--b=2"]]``."""
    groups: list[list[str]] = []
    for token in args:
        if token.startswith("--") or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    return groups


def merge_server_args(defaults: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """The seed's flags with every flag named in ``overrides`` replaced by the override
    (``--mem-fraction-static 0.8`` or ``--mem-fraction-static=0.8``); new flags are appended."""
    override_groups = _flag_groups(overrides)
    named = {group[0].split("=", 1)[0] for group in override_groups}
    kept = [group for group in _flag_groups(defaults) if group[0].split("=", 1)[0] not in named]
    if "--served-model-name" in named:
        raise ValueError("--served-model-name is fixed to 'default' so every client finds the model")
    return [token for group in kept + override_groups for token in group]


def server_command(
    model_dir: Path, backend: str, host: str, port: int, extra_args: Sequence[str] = ()
) -> tuple[list[str], Path | None]:
    """The launch command and, for ``transformers serve``, the working dir holding the
    ``default`` symlink (that server has no ``--served-model-name``)."""
    if backend == "sglang":
        cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", str(model_dir),
               "--served-model-name", SERVED_MODEL_NAME, "--host", host, "--port", str(port),
               *merge_server_args(SGLANG_DEFAULT_ARGS, extra_args)]  # fmt: skip
        return cmd, None
    if backend == "transformers":
        workdir = Path(tempfile.mkdtemp(prefix="trl_ext_serve_"))
        (workdir / SERVED_MODEL_NAME).symlink_to(Path(model_dir).resolve(), target_is_directory=True)
        exe = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
        cmd = [exe, "serve", SERVED_MODEL_NAME, "--host", host, "--port", str(port), "--device", "cpu",
               "--dtype", "float32", *extra_args]  # fmt: skip
        return cmd, workdir
    raise ValueError(f"unknown server backend {backend!r} (use auto, sglang or transformers)")


@contextlib.contextmanager
def launch_server(
    model_dir: str | Path,
    backend: str = "auto",
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout_s: float = 300.0,
    log_path: str | Path | None = None,
) -> Iterator[ServerHandle]:
    """Run a server for ``model_dir`` for the duration of the ``with`` block."""
    backend = pick_backend(backend)
    port = port or free_port(host)
    cmd, workdir = server_command(Path(model_dir), backend, host, port, extra_args)
    log_path = (
        Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="trl_ext_server_", suffix=".log")[1])
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    handle = ServerHandle(f"http://{host}:{port}", process.pid, backend, log_path, cmd)
    try:
        try:
            wait_until_ready(handle.base_url, SERVED_MODEL_NAME, timeout_s=ready_timeout_s)
        except TimeoutError as err:
            tail = log_path.read_text(errors="replace")[-3000:]
            code = process.poll()
            state = f"exited with code {code}" if code is not None else "still starting"
            raise RuntimeError(
                f"{backend} server ({' '.join(cmd)}) {state}: {err}\n--- log tail ---\n{tail}"
            ) from None
        yield handle
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
