"""The running training, owned by the main window so it outlives the Train page.

The child's stdout lines go through the same `RunRecorder` the CLI uses; the controller only
adds Qt signals for whoever is watching.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QIODevice, QObject, QProcess, QTimer, Signal

from finetuneflow.core.child_protocol import STOP_COMMAND, Event
from finetuneflow.services.child_process import child_environment
from finetuneflow.services.context import AppContext
from finetuneflow.services.trainer_process import STOP_GRACE_SECONDS, trainer_command

if TYPE_CHECKING:  # the training service loads the dataset code: not needed at start-up
    from finetuneflow.services.training import PreparedRun, RunRecorder


class TrainingController(QObject):
    event_received = Signal(object)  # a protocol Event
    run_ended = Signal(object)  # the final Event, or None when the child died

    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self._context = context
        self._process: QProcess | None = None
        self._recorder: RunRecorder | None = None
        self._buffer = b""
        self.prepared: PreparedRun | None = None

    @property
    def running(self) -> bool:
        return self._process is not None

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

    def stop(self) -> None:
        """Ask the child to stop after the current step (it saves a checkpoint)."""
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
        """Block until the child has ended (closing the app): True if it did."""
        return self._process is None or self._process.waitForFinished(milliseconds)
