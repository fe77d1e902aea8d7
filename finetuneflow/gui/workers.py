"""Run service calls on the thread pool and hear back through Qt signals on the main thread."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from functools import cache, partial
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from finetuneflow.core.progress import Cancelled, CancelToken, ProgressSink

log = logging.getLogger(__name__)

Work = Callable[[ProgressSink, CancelToken], Any]


class WorkerSignals(QObject):
    progress = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(object)  # the exception
    cancelled = Signal()
    finished = Signal(int)  # the worker's key


class Worker(QRunnable):
    """One background call. Signals are created on the main thread, so slots run there."""

    def __init__(self, work: Work, key: int) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the runner keeps it until `finished` has been delivered
        self.work = work
        self.key = key
        self.signals = WorkerSignals()
        self.cancel_token = CancelToken()
        # Set before the result is signalled, so a slot reacting to it may start the next task.
        self.done = False

    def run(self) -> None:
        try:
            result = self.work(self.signals.progress.emit, self.cancel_token)
        except Cancelled:
            self._end(self.signals.cancelled.emit)
        except Exception as error:
            log.exception("background task failed")
            self._end(partial(self.signals.failed.emit, error))
        else:
            if self.cancel_token.cancelled:
                self._end(self.signals.cancelled.emit)
            else:
                self._end(partial(self.signals.succeeded.emit, result))

    def _end(self, emit_outcome: Callable[[], None]) -> None:
        self.done = True
        try:
            emit_outcome()
            self.signals.finished.emit(self.key)
        except RuntimeError:  # its window was torn down meanwhile: nobody is left to tell
            log.info("A background task ended after its window closed")

    def cancel(self) -> None:
        self.cancel_token.cancel()


class BackgroundTasks(QObject):
    """Work started in this window that is no job in the database (adding files, downloading
    weights): the status bar lists it beside the jobs, with its progress."""

    changed = Signal()  # a task began or ended

    def __init__(self) -> None:
        super().__init__()
        self._tasks: dict[int, tuple[str, float]] = {}
        self._keys = itertools.count()

    def begin(self, text: str) -> int:
        key = next(self._keys)
        self._tasks[key] = (text, 0.0)
        self.changed.emit()
        return key

    def advance(self, key: int, fraction: float) -> None:
        if key in self._tasks:
            self._tasks[key] = (self._tasks[key][0], fraction)

    def end(self, key: int) -> None:
        if self._tasks.pop(key, None) is not None:
            self.changed.emit()

    def describe(self) -> list[str]:
        return [f"{text} {fraction:.0%}" for text, fraction in self._tasks.values()]


@cache
def background_tasks() -> BackgroundTasks:
    """The window's one list (made on first use, on the main thread)."""
    return BackgroundTasks()


class TaskRunner(QObject):
    """Runs a page's background calls, at most one per name, and keeps every worker (and so its
    signals) alive until its last signal has been delivered: a signal object destroyed earlier
    takes its queued results with it."""

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        self._pool = pool or QThreadPool.globalInstance()
        self._by_name: dict[str, Worker] = {}
        self._alive: dict[int, Worker] = {}
        self._keys = itertools.count()

    def start(self, name: str, work: Work, *,
              on_success: Callable[[Any], None] | None = None,
              on_failure: Callable[[BaseException], None] | None = None,
              on_progress: Callable[[float, str], None] | None = None,
              on_cancel: Callable[[], None] | None = None,
              on_finished: Callable[[], None] | None = None,
              status_text: str | None = None) -> Worker:
        """Connect the slots, then start: a worker that fails at once must not beat them.

        With `status_text`, the status bar lists the task (with its progress) while it runs."""
        previous = self._by_name.get(name)
        if previous is not None and not previous.done:  # an outcome slot may start the next
            raise RuntimeError(f"{name} is already running")
        worker = Worker(work, next(self._keys))
        self._by_name[name] = worker
        self._alive[worker.key] = worker
        signals = worker.signals
        # Imported here: the first use of the Qt namespace costs about 30 ms, and this module
        # loads before the window shows.
        from PySide6.QtCore import Qt

        # Queued: every slot, lambdas included, runs on the main thread, in emission order.
        queued = Qt.ConnectionType.QueuedConnection
        for signal, slot in ((signals.succeeded, on_success), (signals.failed, on_failure),
                             (signals.progress, on_progress), (signals.cancelled, on_cancel)):
            if slot is not None:
                signal.connect(self._while_alive(slot), queued)
        # One slot forgets the task, then runs `on_finished`: with two, a check between them
        # could see the task ended while its `on_finished` had not run yet.
        signals.finished.connect(self._while_alive(partial(self._end, on_finished)), queued)
        if status_text is not None:
            tasks = background_tasks()
            task = tasks.begin(status_text)
            signals.progress.connect(lambda fraction, _text: tasks.advance(task, fraction), queued)
            signals.finished.connect(lambda _key: tasks.end(task), queued)
        self._pool.start(worker)
        return worker

    def _while_alive(self, slot: Callable[..., None]) -> Callable[..., None]:
        """The slot, skipped once this runner (and so the page that owns it) is deleted: a
        result that arrives after the person closed the project has nowhere to go. Qt drops
        the connections of a deleted receiver, but a plain function has no receiver."""
        from shiboken6 import isValid

        def run(*args: Any) -> None:
            if isValid(self):
                slot(*args)

        return run

    def _end(self, on_finished: Callable[[], None] | None, key: int) -> None:
        self._alive.pop(key, None)
        if on_finished is not None:
            on_finished()

    def is_running(self, name: str) -> bool:
        """True until the task's `finished` signal reaches the main thread: polling this sees
        its outcome slots and `on_finished` done (`on_finished` itself already sees it ended)."""
        worker = self._by_name.get(name)
        return worker is not None and worker.key in self._alive

    def busy(self) -> bool:
        """Some task has slots still to run: deleting this runner now would lose them."""
        return bool(self._alive)

    def cancel(self, name: str) -> None:
        if name in self._by_name:
            self._by_name[name].cancel()

    def cancel_all(self) -> None:
        for worker in self._alive.values():
            worker.cancel()
