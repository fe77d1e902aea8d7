"""The running training, owned by the main window so it outlives the Train page.

The child's stdout lines go through the same `RunRecorder` the CLI uses; the controller only
adds Qt signals for whoever is watching. A run on a machine is followed by
services/remote_follow.py on a thread of its own; its events come here as queued signals.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from PySide6.QtCore import QIODevice, QObject, QProcess, QTimer, Signal

from finetuneflow.core.child_protocol import STOP_COMMAND, Event
from finetuneflow.services.child_process import child_environment
from finetuneflow.services.context import AppContext
from finetuneflow.services.trainer_process import STOP_GRACE_SECONDS, trainer_command

if TYPE_CHECKING:  # the training service loads the dataset code: not needed at start-up
    from finetuneflow.services.remote_follow import RemoteFollow, RemoteOutcome
    from finetuneflow.services.training import PreparedRun, RunRecorder


class _RemoteSignals(QObject):
    """Made on the main thread and emitted from the follow thread: Qt queues each to the main
    thread, in the order emitted."""

    received = Signal(object)  # not `event`: that is QObject.event()
    message = Signal(str)
    ended = Signal(object)  # the RemoteOutcome


class TrainingController(QObject):
    event_received = Signal(object)  # a protocol Event
    run_ended = Signal(object)  # the final Event, or None when the child died
    remote_message = Signal(str)  # a run on a machine: uploads, reconnections

    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self._context = context
        self._process: QProcess | None = None
        self._recorder: RunRecorder | None = None
        self._buffer = b""
        self.prepared: PreparedRun | None = None
        self._remote: RemoteFollow | None = None
        self._remote_signals: _RemoteSignals | None = None
        self._thread: threading.Thread | None = None
        self.outcome: RemoteOutcome | None = None  # how the last run on a machine ended

    @property
    def running(self) -> bool:
        return self._process is not None or self._remote is not None

    @property
    def machine(self) -> str | None:
        """The machine the running run trains on; None when it trains here (or none runs)."""
        return None if self._remote is None else self._remote.machine

    def start(self, prepared: PreparedRun, processes: int = 1) -> None:
        """Start the child; refused (UserError) while another process trains the project."""
        if self.running:
            raise RuntimeError("a training is already running")
        from finetuneflow.services.training import RunRecorder

        recorder = RunRecorder(self._context, prepared)
        recorder.begin()  # a UserError when another process trains this project
        self.prepared, self._recorder = prepared, recorder
        process = QProcess(self)
        command = trainer_command("run", str(prepared.job_path), processes=processes)
        process.setProgram(command[0])
        process.setArguments(command[1:])
        environment = process.processEnvironment()
        for key, value in child_environment().items():
            environment.insert(key, value)
        process.setProcessEnvironment(environment)
        prepared.log_path.parent.mkdir(parents=True, exist_ok=True)
        process.setStandardErrorFile(str(prepared.log_path), QIODevice.OpenModeFlag.Append)
        process.readyReadStandardOutput.connect(self._read_output)
        process.finished.connect(self._on_finished)
        self._process = process
        process.start()

    def start_remote(self, prepared: PreparedRun, machine: str, processes: int = 1, *,
                     attach: bool = False) -> None:
        """Upload and start the run on `machine` (or follow it again: `attach`), on a thread of
        its own; refused (UserError) while another process trains the project."""
        if self.running:
            raise RuntimeError("a training is already running")
        from finetuneflow.services.remote_follow import RemoteFollow
        from finetuneflow.services.training import RunRecorder

        recorder = RunRecorder(self._context, prepared)
        recorder.begin()
        self.prepared, self._recorder, self.outcome = prepared, recorder, None
        follow = RemoteFollow(self._context, prepared, machine, processes=processes,
                              attach=attach)
        signals = _RemoteSignals(self)
        signals.received.connect(self.event_received)
        signals.message.connect(self.remote_message)
        signals.ended.connect(self._on_remote_ended)
        self._remote, self._remote_signals = follow, signals
        self._thread = threading.Thread(
            target=lambda: signals.ended.emit(follow.run(recorder, signals.received.emit,
                                                         signals.message.emit)),
            name=f"follow-{machine}", daemon=True)
        self._thread.start()

    def _on_remote_ended(self, outcome: RemoteOutcome) -> None:
        assert self._recorder is not None
        self.outcome = outcome
        self._remote = None
        if self._remote_signals is not None:
            self._remote_signals.deleteLater()
            self._remote_signals = None
        self.run_ended.emit(self._recorder.final)

    def detach(self) -> None:
        """Stop following a run on a machine without stopping it there (closing the app)."""
        if self._remote is not None:
            self._remote.detach()

    def stop(self) -> None:
        """Ask the child to stop after the current step (it saves a checkpoint)."""
        if self._remote is not None:
            self._remote.stop()  # the stop line there; a kill after the grace period
            return
        if self._process is None:
            return
        self._process.write(f"{STOP_COMMAND}\n".encode())
        process = self._process
        QTimer.singleShot(int(STOP_GRACE_SECONDS * 1000),
                          lambda: process.kill() if self._process is process else None)

    def _read_output(self) -> None:
        assert self._process is not None and self._recorder is not None
        self._buffer += bytes(self._process.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").strip()
            if line and (event := self._recorder.handle_line(line)) is not None:
                self.event_received.emit(event)

    def _on_finished(self, exit_code: int, _status: QProcess.ExitStatus) -> None:
        self._read_output()
        assert self._recorder is not None
        self._recorder.process_ended(exit_code)
        final: Event | None = self._recorder.final
        if self._process is not None:
            self._process.deleteLater()
            self._process = None
        self.run_ended.emit(final)

    def wait_for_end(self, milliseconds: int) -> bool:
        """Block until the child has ended, or the follow of a run on a machine (closing the
        app): True if it did."""
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(milliseconds / 1000)
            return not self._thread.is_alive()
        return self._process is None or self._process.waitForFinished(milliseconds)
