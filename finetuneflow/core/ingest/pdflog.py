"""Rate-limiting pypdf's logging: some files make it log the same warning thousands of times."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

PYPDF_LOGGER = "pypdf"
_FIRST_PASSED = 3
_DIGITS = re.compile(r"\d+")

logger = logging.getLogger(__name__)


class RepeatLimitFilter(logging.Filter):
    """Passes the first few records of each message and counts the rest.

    Counts are kept per thread inside ``counting()``, so a summary can be logged per document
    even when documents are loaded in parallel; outside it they are shared.
    """

    def __init__(self, first_passed: int = _FIRST_PASSED) -> None:
        super().__init__()
        self.first_passed = first_passed
        self._local = threading.local()
        self._shared: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, _DIGITS.sub("#", str(record.msg)))
        counts: Counter[tuple[str, str]] | None = getattr(self._local, "counts", None)
        if counts is None:
            with self._lock:
                self._shared[key] += 1
                return self._shared[key] <= self.first_passed
        counts[key] += 1
        return counts[key] <= self.first_passed

    @contextmanager
    def counting(self) -> Iterator[Counter[tuple[str, str]]]:
        """Count this thread's records afresh; yields the counter (message -> times logged)."""
        previous = getattr(self._local, "counts", None)
        self._local.counts = Counter()
        try:
            yield self._local.counts
        finally:
            self._local.counts = previous


_FILTER = RepeatLimitFilter()


def install_filter() -> RepeatLimitFilter:
    """Attach the filter to the pypdf logger and its children.

    Logger filters do not apply to records from child loggers, and pypdf logs through one
    logger per module ("pypdf._reader", "pypdf._cmap"…), so each needs it.
    """
    names = [PYPDF_LOGGER] + [name for name in list(sys.modules) if name.startswith("pypdf.")]
    for name in names:
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
    return _FILTER


@contextmanager
def limited_pypdf_logging(label: str) -> Iterator[None]:
    """Rate-limit pypdf's records while reading one document, then log what was held back."""
    limiter = install_filter()
    with limiter.counting() as counts:
        yield
        held_back = sum(max(0, count - limiter.first_passed) for count in counts.values())
        if held_back:
            logger.info(
                "pypdf repeated itself while reading %s: %d more records of %d kinds not shown",
                label,
                held_back,
                sum(1 for count in counts.values() if count > limiter.first_passed),
            )
