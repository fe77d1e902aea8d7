"""Starting and stopping the app's own child processes (the trainer, the worker).

A child is this program again with a subcommand; it reads `stop` on stdin, finishes what it is
doing and exits, and is killed, with every process it started, only if it has not ended after
a grace period.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading

import psutil

from finetuneflow.core.child_protocol import STOP_COMMAND
from finetuneflow.core.progress import CancelToken


def own_command(*args: str) -> list[str]:
    """`finetuneflow ARGS` as a child: the frozen app re-launches itself, a checkout uses -m."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "finetuneflow", *args]


def child_environment() -> dict[str, str]:
    """A child's environment: unbuffered output so events arrive as they happen."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def send_stop(child: subprocess.Popen[bytes]) -> None:
    if child.stdin is not None:
        with contextlib.suppress(OSError, ValueError):  # the child may have ended already
            child.stdin.write(f"{STOP_COMMAND}\n".encode())
            child.stdin.flush()


def watch_cancel(child: subprocess.Popen[bytes], cancel: CancelToken,
                 grace_seconds: float) -> threading.Event:
    """On cancel, ask the child to stop; kill it if it has not ended after `grace_seconds`.
    Set the returned event once the child has ended by itself."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if cancel.wait(0.1):
                send_stop(child)
                try:
                    child.wait(timeout=grace_seconds)
                except subprocess.TimeoutExpired:
                    kill_tree(child)
                return

    threading.Thread(target=watch, name="child-stop", daemon=True).start()
    return finished


def kill_tree(child: subprocess.Popen[bytes]) -> None:
    """Kill the child and every process under it: the ranks that `accelerate launch` starts
    would otherwise go on, orphaned, holding the GPUs, once their launcher is killed."""
    try:
        below = psutil.Process(child.pid).children(recursive=True)
    except psutil.NoSuchProcess:  # ended meanwhile
        below = []
    child.kill()  # first, so it starts no more
    for process in below:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
