"""Start an OpenAI-compatible inference server for a model directory and stop it by PID.

On a GPU machine the server is SGLang (``python -m sglang.launch_server``); where SGLang
cannot run (CPU machines: it is CUDA-only on PyPI) it is ``transformers serve
--continuous-batching``, which batches concurrent requests (without it, requests run one at a
time and concurrency 32 is no faster than 1). Both serve the model name ``default`` so the
client code is identical.

Lifetime: the server runs under :mod:`eval.server_guard` in its own process group. It is stopped
by PID on success, error, Ctrl-C or SIGTERM, and it also dies when the process that started it
dies (even by SIGKILL), taking its temporary working directory with it.

``transformers serve --continuous-batching`` (transformers 5.24) has two limits the rest of the
package works around: the sampling settings (temperature, top_p, do_sample) of the *first*
request apply to every request of that server, and ``stop`` strings are ignored (the eval
client cuts completions at the stop strings itself). The served directory therefore carries a
``generation_config.json`` with ``do_sample=true`` and the run's temperature/top_p, so a base
model whose own config says greedy is still sampled.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
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

from eval.server_guard import set_parent_death_signal
from trl_ext.client import wait_until_ready

SERVED_MODEL_NAME = "default"
# KV cache budget of the CPU continuous-batching server: transformers sizes it from free RAM
# otherwise (GBs even for the tiny model). 2 GiB holds 32 x 1.2k-token requests of Qwen3-0.6B in fp32.
CPU_KV_BUDGET_BYTES = 2 * 1024**3
CB_PAGE_SIZE = 256
CB_MAX_BATCH_TOKENS = 1024  # tokens per forward pass; bounds the activation memory transformers reserves
# The reference run's SGLang flags (docs/reference_results.md); every one can be overridden.
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
    """A running server: where it listens and how to stop it. ``pid`` is the guard's (stopping it
    stops the server); ``server_pid`` is the server process itself."""

    base_url: str
    pid: int
    backend: str
    log_path: Path
    command: list[str] = field(default_factory=list)
    server_pid: int | None = None
    workdir: Path | None = None


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
    """The reference run's flags with every flag named in ``overrides`` replaced by the override
    (``--mem-fraction-static 0.8`` or ``--mem-fraction-static=0.8``); new flags are appended."""
    override_groups = _flag_groups(overrides)
    named = {group[0].split("=", 1)[0] for group in override_groups}
    kept = [group for group in _flag_groups(defaults) if group[0].split("=", 1)[0] not in named]
    if "--served-model-name" in named:
        raise ValueError("--served-model-name is fixed to 'default' so every client finds the model")
    return [token for group in kept + override_groups for token in group]


def cb_num_blocks(model_dir: Path, budget_bytes: int = CPU_KV_BUDGET_BYTES, dtype_bytes: int = 4) -> int:
    """KV-cache blocks (of ``CB_PAGE_SIZE`` tokens) that fit ``budget_bytes`` for this model."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    config = config.get("text_config", config)
    heads = config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    per_token = 2 * config["num_hidden_layers"] * heads * head_dim * dtype_bytes
    return int(max(16, min(1024, budget_bytes // (per_token * CB_PAGE_SIZE))))


def served_model_dir(model_dir: Path, workdir: Path, sampling: dict | None = None) -> Path:
    """``workdir/default``: links to every file of ``model_dir`` plus a generation config that
    samples (``transformers serve`` has no ``--served-model-name``, and with continuous batching
    the model's own ``do_sample=false`` would make every "sample" greedy)."""
    model_dir = Path(model_dir).resolve()
    served = workdir / SERVED_MODEL_NAME
    served.mkdir()
    for item in model_dir.iterdir():
        if item.name != "generation_config.json":
            (served / item.name).symlink_to(item, target_is_directory=item.is_dir())
    original = model_dir / "generation_config.json"
    config = json.loads(original.read_text(encoding="utf-8")) if original.exists() else {}
    config.update({"do_sample": True, **(sampling or {})})
    (served / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return served


def server_command(
    model_dir: Path,
    backend: str,
    host: str,
    port: int,
    extra_args: Sequence[str] = (),
    sampling: dict | None = None,
    stock_sampling: bool = False,
) -> tuple[list[str], Path | None]:
    """The launch command and, for ``transformers serve``, the working dir holding the served
    ``default`` directory (the caller removes it). The CPU server runs through
    :mod:`eval.cpu_server` (transformers' server with a sort-free nucleus sampler) unless
    ``stock_sampling``."""
    if backend == "sglang":
        cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", str(model_dir),
               "--served-model-name", SERVED_MODEL_NAME, "--host", host, "--port", str(port),
               *merge_server_args(SGLANG_DEFAULT_ARGS, extra_args)]  # fmt: skip
        return cmd, None
    if backend == "transformers":
        defaults = [
            "--continuous-batching",
            "--cb-num-blocks",
            str(cb_num_blocks(Path(model_dir))),
            "--cb-max-batch-tokens",
            str(CB_MAX_BATCH_TOKENS),
        ]
        workdir = Path(tempfile.mkdtemp(prefix="trl_ext_serve_"))
        try:
            served_model_dir(Path(model_dir), workdir, sampling)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        entry = [sys.executable, "-m", "eval.cpu_server", *(["--stock-sampling"] if stock_sampling else [])]
        cmd = [*entry, "serve", SERVED_MODEL_NAME, "--host", host, "--port", str(port), "--device", "cpu",
               "--dtype", "float32", *merge_server_args(defaults, extra_args)]  # fmt: skip
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
    sampling: dict | None = None,
    stock_sampling: bool = False,
) -> Iterator[ServerHandle]:
    """Run a server for ``model_dir`` for the duration of the ``with`` block.

    ``sampling`` (``{"temperature": .., "top_p": ..}``) becomes the CPU server's default; SGLang
    takes sampling settings per request. Call it from the main thread: the server is tied to the
    lifetime of the thread that starts it."""
    backend = pick_backend(backend)
    port = port or free_port(host)
    cmd, workdir = server_command(Path(model_dir), backend, host, port, extra_args, sampling, stock_sampling)
    log_path = (
        Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="trl_ext_server_", suffix=".log")[1])
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    guard = [sys.executable, "-m", "eval.server_guard", "--parent-pid", str(os.getpid())]
    guard += ["--cleanup", str(workdir)] if workdir is not None else []
    repo_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH")) if p)
    try:
        with open(log_path, "ab") as log:
            process = subprocess.Popen([*guard, "--", *cmd], cwd=workdir, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=_guard_dies_with_us)  # fmt: skip
    except BaseException:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    handle = ServerHandle(f"http://{host}:{port}", process.pid, backend, log_path, cmd, workdir=workdir)
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
        handle.server_pid = _server_pid(process.pid)
        yield handle
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _guard_dies_with_us() -> None:  # in the guard process, between fork and exec
    set_parent_death_signal(signal.SIGTERM)


def _server_pid(guard_pid: int) -> int | None:
    try:
        import psutil

        children = psutil.Process(guard_pid).children()
    except Exception:  # noqa: BLE001 - only informational
        return None
    return children[0].pid if children else None
