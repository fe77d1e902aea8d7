from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QObject
from pytestqt.qtbot import QtBot

from finetuneflow.core.progress import CancelToken, ProgressSink
from finetuneflow.gui.workers import TaskRunner


class Recorder(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, object, int]] = []

    def record(self, name: str, value: object = None) -> None:
        self.events.append((name, value, threading.get_ident()))


def fail_at_once(progress: ProgressSink, _cancel: CancelToken) -> None:
    progress(0.5, "half")
    raise ValueError("boom")


def run_failing_task(qtbot: QtBot) -> Recorder:
    recorder = Recorder()
    runner = TaskRunner(recorder)
    runner.start("job", fail_at_once, on_failure=lambda e: recorder.record("failed", e),
                 on_progress=lambda f, _m: recorder.record("progress", f),
                 on_finished=lambda: recorder.record("finished"))
    qtbot.waitUntil(lambda: len(recorder.events) == 3, timeout=5000)
    assert not runner.is_running("job")
    return recorder


def test_an_instant_failure_reaches_its_slot_on_the_main_thread(qtbot: QtBot) -> None:
    """Slots are connected before the worker starts, so nothing it emits is lost."""
    for _ in range(20):
        recorder = run_failing_task(qtbot)
        assert [name for name, _v, _t in recorder.events] == ["progress", "failed", "finished"]
        assert {thread for _n, _v, thread in recorder.events} == {threading.get_ident()}


def test_one_task_per_name_and_cancel(qtbot: QtBot) -> None:
    recorder = Recorder()
    runner = TaskRunner(recorder)

    def wait_for_cancel(_progress: ProgressSink, cancel: CancelToken) -> str:
        while not cancel.wait(0.01):
            pass
        return "stopped"

    runner.start("job", wait_for_cancel, on_cancel=lambda: recorder.record("cancelled"),
                 on_success=lambda r: recorder.record("succeeded", r))
    assert runner.is_running("job")
    with pytest.raises(RuntimeError, match="already running"):
        runner.start("job", wait_for_cancel)
    started = time.monotonic()
    runner.cancel("job")
    qtbot.waitUntil(lambda: bool(recorder.events), timeout=5000)
    assert recorder.events[0][0] == "cancelled" and time.monotonic() - started < 2


def test_a_task_runs_until_its_slots_have_run_and_a_slot_may_start_the_next(
        qtbot: QtBot) -> None:
    """Polling `is_running` (tests, the benchmark) or `busy` (releasing an idle wizard) must
    never see a task over whose results are still queued for the main thread."""
    recorder = Recorder()
    runner = TaskRunner(recorder)

    def start_again(result: object) -> None:
        recorder.record("succeeded", result)
        if result == "first":  # allowed: this task's outcome has arrived
            runner.start("job", lambda _p, _c: "second",
                         on_success=lambda r: recorder.record("succeeded", r))

    for _ in range(20):
        recorder.events.clear()
        runner.start("job", lambda _p, _c: "first", on_success=start_again,
                     on_finished=lambda: recorder.record("finished"))
        qtbot.waitUntil(lambda: not runner.busy(), timeout=5000)
        assert [value for name, value, _t in recorder.events if name == "succeeded"] == [
            "first", "second"]
        assert ("finished", None) in [(name, value) for name, value, _t in recorder.events]


def test_a_result_for_a_deleted_page_is_dropped(qtbot: QtBot) -> None:
    """A page closed while its task runs (the project closed mid-way): the task's result
    arrives after the page's Qt object is gone, and must not be handed to it."""
    from PySide6.QtCore import QThreadPool
    from PySide6.QtWidgets import QLabel
    from shiboken6 import delete

    page = QLabel()
    runner = TaskRunner(page)
    release = threading.Event()
    runner.start("report", lambda _p, _c: release.wait(10) and "the report",
                 on_success=page.setText, on_finished=lambda: page.setText("done"))
    delete(page)  # the runner, its child, goes with it
    release.set()
    QThreadPool.globalInstance().waitForDone(10_000)
    qtbot.wait(50)  # the queued results are delivered, or dropped, here
