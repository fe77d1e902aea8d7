"""A stopped child that does not end in time is killed with every process it started, as a
launcher's ranks (`train --processes N`) would otherwise train on, orphaned."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from finetuneflow.core.progress import CancelToken
from finetuneflow.services.child_process import watch_cancel

# A launcher that ignores `stop`, with a rank under it, and a rank of that rank: each prints
# its pid and sleeps.
RANK = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"
LAUNCHER = f"""
import subprocess, sys, time
rank = subprocess.Popen([sys.executable, "-c", {RANK!r}.replace("time.sleep(600)",
    "subprocess.Popen([sys.executable, '-c', {RANK!r}]); time.sleep(600)").replace(
    "import os", "import os, subprocess, sys")])
time.sleep(600)
"""


def test_a_child_that_ignores_stop_is_killed_with_its_ranks() -> None:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
    ranks = wait_for_descendants(launcher.pid, 2)
    cancel = CancelToken()
    watch_cancel(launcher, cancel, grace_seconds=0.5)
    cancel.cancel()
    assert launcher.wait(timeout=30) != 0  # killed: it never ended by itself
    gone, alive = psutil.wait_procs(ranks, timeout=30)
    assert not alive, f"ranks left running: {[rank.pid for rank in alive]}"
    assert len(gone) == 2


def test_a_child_that_stops_in_time_is_not_killed() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                             stdin=subprocess.PIPE)
    cancel = CancelToken()
    watch_cancel(child, cancel, grace_seconds=30)
    cancel.cancel()
    assert child.wait(timeout=30) == 0  # read `stop` and ended on its own


def wait_for_descendants(pid: int, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        below = psutil.Process(pid).children(recursive=True)
        if len(below) >= count:
            return below
        time.sleep(0.05)
    raise AssertionError(f"the launcher did not start {count} processes")
