"""``python -m eval.server_guard --cleanup DIR -- CMD ...``: run a model server that dies with its parent.

The eval CLI, the benches and the test fixtures start servers through this guard (see
:func:`eval.serving.launch_server`). Why a separate process: the caller's ``finally`` never runs
when the caller is SIGKILLed (OOM killer, ``kill -9``, a CI timeout), and a server re-parented to
PID 1 keeps its port, its memory and its temporary working directory forever. The guard:

* asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``) and also polls
  the parent PID once a second, in case the parent was gone before that call took effect;
* starts the server with ``PR_SET_PDEATHSIG=SIGKILL``, so the server cannot outlive the guard;
* on SIGTERM/SIGINT/SIGHUP, or when the parent is gone, stops the server (SIGTERM, then SIGKILL
  after a grace period), removes the ``--cleanup`` directories and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
GRACE_S = 20.0


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def set_parent_death_signal(sig: int) -> None:
    """Linux: deliver ``sig`` to this process when its parent thread exits (no-op elsewhere).
    Safe between fork and exec: no import, no allocation beyond the call."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _kill_child_on_guard_death() -> None:  # runs in the server process between fork and exec
    set_parent_death_signal(signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.server_guard")
    parser.add_argument("--parent-pid", type=int, required=True, help="stop when this process is gone")
    parser.add_argument("--cleanup", action="append", default=[], help="directory removed at exit")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no server command given after --")

    set_parent_death_signal(signal.SIGTERM)
    stopping = {"reason": None}

    def request_stop(signum, _frame) -> None:
        stopping["reason"] = signal.Signals(signum).name

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request_stop)

    server = subprocess.Popen(command, preexec_fn=_kill_child_on_guard_death)  # noqa: PLW1509
    code = None
    try:
        while code is None and stopping["reason"] is None:
            if os.getppid() != args.parent_pid:
                stopping["reason"] = "parent gone"
                break
            try:
                code = server.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        for path in args.cleanup:
            shutil.rmtree(path, ignore_errors=True)
    if stopping["reason"] is not None:
        print(f"server_guard: stopped the server ({stopping['reason']})", file=sys.stderr, flush=True)
        return 0
    return int(code or 0)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
