"""How long-running services report progress and learn that the user cancelled.

Services take these two small objects instead of Qt signals, so the same code runs under the
GUI (a sink that emits signals), the CLI (a sink that prints) and tests.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Cancelled(Exception):
    """Raised inside a service when its cancel token was set; the work done so far is kept."""


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on cancel; True if cancelled."""
        return self._event.wait(seconds)


class ProgressSink(Protocol):
    def __call__(self, fraction: float, message: str) -> None: ...


def ignore_progress(fraction: float, message: str) -> None:
    """A sink for callers that do not show progress."""


def both(first: ProgressSink, second: ProgressSink) -> ProgressSink:
    """One sink that reports to two (a job record and the caller's display)."""
    def report(fraction: float, message: str) -> None:
        first(fraction, message)
        second(fraction, message)

    return report


def scaled(sink: ProgressSink, start: float, end: float) -> ProgressSink:
    """A sink for one stage of a longer task: its 0..1 becomes start..end of the whole."""
    def report(fraction: float, message: str) -> None:
        sink(start + (end - start) * fraction, message)

    return report
