"""The processes a test started, found with psutil (as the app finds a trainer's ranks)."""

from __future__ import annotations

from collections.abc import Iterable

import psutil


def processes(*, parent: int | None = None, naming: Iterable[str] = ()) -> list[tuple[int, str]]:
    """(pid, command line) of the running processes (zombies are done: they only wait to be
    reaped): children of `parent` if given, whose command line holds one of `naming` if given."""
    marks = list(naming)
    found = []
    for process in psutil.process_iter(["pid", "ppid", "cmdline", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE or (parent is not None
                                                      and info["ppid"] != parent):
            continue
        command = " ".join(info["cmdline"] or ())
        if not marks or any(mark in command for mark in marks):
            found.append((info["pid"], command))
    return found


def gone(pid: int) -> bool:
    """The process has ended (a zombie has: it only waits to be reaped)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
