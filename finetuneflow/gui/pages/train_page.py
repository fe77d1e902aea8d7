"""Step 7 — Train: start, stop, resume; a live loss chart, progress with ETA, and logs.

It trains where the Hardware step says: this computer, or a machine over SSH (then Reattach
follows a run there again after a lost connection or a closed window)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
)

from finetuneflow.core.child_protocol import (
    CheckpointEvent,
    ErrorEvent,
    EvalEvent,
    Event,
    FinishedEvent,
    LogEvent,
    StartedEvent,
    StatusEvent,
    StoppedEvent,
    WarningEvent,
)
from finetuneflow.core.steps import Step
from finetuneflow.core.training.timing import EtaSmoother
from finetuneflow.core.units import format_bytes, format_duration
from finetuneflow.gui.colours import set_tone
from finetuneflow.gui.errors import describe
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.gui.training_controller import TrainingController
from finetuneflow.gui.widgets.evaluation_view import RunComparison
from finetuneflow.gui.widgets.loss_chart import LossChart
from finetuneflow.gui.workers import TaskRunner, Work
from finetuneflow.services import evaluation as evaluations
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.finished_runs import FinishedRuns
from finetuneflow.services.hardware import HardwareService
from finetuneflow.services.projects import ProjectSummary
from finetuneflow.services.remote_follow import (
    prepare_reattach,
    reattachable,
    remote_processes,
)
from finetuneflow.services.settings import AppSettings
from finetuneflow.services.train_location import train_location
from finetuneflow.services.training import PreparedRun, QLoRAWithoutCuda, TrainingService

MAX_LOG_LINES = 2000


def event_text(event: Event) -> str | None:
    """One line for the log view, or None for events the chart and progress already show."""
    if isinstance(event, StatusEvent | WarningEvent):
        return event.message
    if isinstance(event, StartedEvent):
        origin = f" (resumed at step {event.start_step})" if event.start_step else ""
        return (f"Training {event.model} with {event.method.upper()} on {event.device}: "
                f"{event.train_examples} examples, {event.total_steps} steps{origin}.")
    if isinstance(event, EvalEvent) and event.eval_loss is not None:
        return f"Step {event.step}: eval loss {event.eval_loss:.4f}"
    if isinstance(event, CheckpointEvent):
        return f"Checkpoint saved at step {event.step}."
    if isinstance(event, FinishedEvent):
        return f"Finished ({event.reason}): adapter saved in {event.adapter_dir}"
    if isinstance(event, StoppedEvent | ErrorEvent):
        return event.message
    return None


class TrainPage(StepPage):
    def __init__(self, step: Step, context: AppContext, project: ProjectSummary,
                 controller: TrainingController) -> None:
        super().__init__(step, context, project)
        self.training = TrainingService(context)
        self.controller = controller
        self.tasks = TaskRunner(self)
        self.eta = EtaSmoother()  # the ETA over recent steps: one slow step does not swing it

        self.start_button = QPushButton("Start training")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(self.resume)
        self.smaller_button = QPushButton("Retry with smaller settings")
        self.smaller_button.clicked.connect(self.retry_smaller)
        self._retried = False
        self.compare_button = QPushButton(objectName="compareRuns", visible=False)
        self.compare_button.clicked.connect(self.compare_runs)
        # A run on a machine that nothing here follows (connection lost, window closed).
        self.reattach_button = QPushButton("Reattach", objectName="reattach", visible=False)
        self.reattach_button.clicked.connect(self.reattach)
        self._reattach_to: str | None = None
        self.comparison: RunComparison | None = None
        self.state = QLabel()
        self.state.setWordWrap(True)
        buttons = QHBoxLayout()
        for widget in (self.start_button, self.stop_button, self.resume_button,
                       self.reattach_button, self.smaller_button, self.compare_button):
            buttons.addWidget(widget)
        buttons.addWidget(self.state, 1)
        # Where the next run trains (the Hardware step's choice), or why not where chosen.
        self.where = QLabel(objectName="trainWhere")
        self.where.setWordWrap(True)
        self._machine: str | None = None  # where the run being prepared goes; None: here

        self.chart = LossChart()
        self.progress = QProgressBar()
        self.stats = {name: QLabel("—") for name in ("Step", "Epoch", "ETA", "Tokens/s",
                                                      "Memory")}
        grid = QGridLayout()
        for column, (name, label) in enumerate(self.stats.items()):
            grid.addWidget(QLabel(f"<small>{name}</small>"), 0, column)
            grid.addWidget(label, 1, column)
        self.log_view = QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(MAX_LOG_LINES)
        self.log_view.setFixedHeight(110)
        self.log_path = QLabel()
        self.log_path.setWordWrap(True)

        self.body.addWidget(self.where)
        self.body.addLayout(buttons)
        self.body.addWidget(self.chart, 1)
        self.body.addWidget(self.progress)
        self.body.addLayout(grid)
        self.body.addWidget(self.log_view)
        self.body.addWidget(self.log_path)

        controller.event_received.connect(self._on_live_event)
        controller.run_ended.connect(self._on_run_ended)
        controller.remote_message.connect(self._on_remote_message)
        self._restore_last_run()
        self._update_buttons()

    def arrive(self) -> None:
        # A run may have started or finished from the command line meanwhile.
        if not self.controller.running and self._latest_run_id() != self._shown_run_id:
            self.chart.clear()
            self.log_view.clear()
            self._restore_last_run()
        self._update_buttons()

    def _latest_run_id(self) -> int | None:
        run = self.training.latest_run(self.project_id)
        return None if run is None else int(run["id"])

    # --- actions --------------------------------------------------------------------------------

    def start(self) -> None:
        config = self.training.config_for(self.project_id)
        self._machine = train_location(self.context, self.project_id).machine
        self._launch(lambda progress, cancel: self.training.prepare(
            self.project_id, config, progress, cancel))

    def retry_smaller(self) -> None:
        """After running out of memory: the recommender's next smaller settings, saved."""
        smaller = self.training.suggested_config(self.project_id)
        if smaller is None:
            return
        self.training.save_config(self.project_id, smaller)
        self.start()

    def resume(self) -> None:
        """Continue the last run from its checkpoint, where the Hardware step says; a run that
        still trains on a machine is followed again instead (the start-up banner's Resume)."""
        if reattachable(self.context, self.project_id) is not None:
            self.reattach()
            return
        self._machine = train_location(self.context, self.project_id).machine
        self._launch(lambda _progress, _cancel: self.training.prepare_resume(self.project_id))

    def reattach(self) -> None:
        """Follow the latest run on its machine again, from where this computer stopped
        reading: the chart goes on from its last step."""
        self._launch(lambda _progress, _cancel: prepare_reattach(self.context, self.project_id))

    def _launch(self, prepare: Work) -> None:
        """Prepare in the background (it may write the dataset files or download the model's
        weights), then start the trainer child."""
        if self.controller.running or self.tasks.is_running("prepare"):
            self.state.setText("A training is already running (one at a time).")
            return
        self.state.setText("Preparing the run…")
        self.tasks.start(
            "prepare", prepare, on_success=self._start_prepared,
            on_progress=lambda _fraction, message: self.state.setText(message),
            on_failure=self._show_failure,
            on_cancel=lambda: self.state.setText("Preparing the run was cancelled."),
            on_finished=self._update_buttons)
        self._update_buttons()

    def _show_failure(self, error: BaseException) -> None:
        text = describe(error, self.context.log_file)[0]
        if isinstance(error, QLoRAWithoutCuda):
            text += " Choose LoRA as the Method on the Hardware step."
        self.state.setText(text)

    def _start_prepared(self, prepared: PreparedRun | tuple[PreparedRun, str]) -> None:
        """Start the trainer here, or on the machine (a pair: a reattach to that machine)."""
        attach = isinstance(prepared, tuple)
        if isinstance(prepared, tuple):
            prepared, self._machine = prepared
        self.eta = EtaSmoother()
        if not (prepared.job.resume or attach):  # a reattach adds to the chart shown
            self.chart.clear()
            self.log_view.clear()
        self.log_path.setText(f"Log file: {prepared.log_path}")
        try:
            if self._machine is not None:
                self.controller.start_remote(
                    prepared, self._machine, remote_processes(self.context, self._machine),
                    attach=attach)
            else:  # one process per GPU (DDP) when the Hardware step found several
                self.controller.start(
                    prepared, processes=max(1, HardwareService(self.context).gpu_count()))
        except UserError as error:  # another process started training this project meanwhile
            self.state.setText(str(error))
            self._update_buttons()
            return
        self.state.setText(
            f"Following run {prepared.run_id} on {self._machine} again…" if attach else
            f"Run {prepared.run_id} is starting on {self._machine} (uploading what it needs)…"
            if self._machine else f"Run {prepared.run_id} is starting (loading the model)…")
        self._update_buttons()

    def stop(self) -> None:
        if self.tasks.is_running("prepare"):  # a weights download, say: keeps finished files
            self.tasks.cancel("prepare")
            self.stop_button.setEnabled(False)
            return
        self.controller.stop()
        there = f" on {self.controller.machine}" if self.controller.machine else ""
        self.state.setText(f"Stopping{there} after the current step; a checkpoint is saved…")
        self.stop_button.setEnabled(False)

    # --- events ---------------------------------------------------------------------------------

    def _mine(self) -> bool:
        prepared = self.controller.prepared
        return prepared is not None and prepared.project_id == self.project_id

    def _on_live_event(self, event: Event) -> None:
        if self._mine():
            self.show_event(event)

    def _on_remote_message(self, message: str) -> None:
        if self._mine():
            self.state.setText(message)

    def show_event(self, event: Event) -> None:
        if isinstance(event, LogEvent):
            self._show_progress(event)
        elif isinstance(event, EvalEvent) and event.eval_loss is not None:
            self.chart.add_eval(event.step, event.eval_loss)
        elif isinstance(event, FinishedEvent):
            self.stats["ETA"].setText("done")
            if event.peak_memory_bytes:
                self.stats["Memory"].setText(format_bytes(event.peak_memory_bytes))
        if (text := event_text(event)) is not None:
            self.log_view.appendPlainText(text)

    def _show_progress(self, event: LogEvent) -> None:
        if event.loss is not None:
            self.chart.add_train(event.step, event.loss)
        self.progress.setRange(0, max(event.total_steps, 1))
        self.progress.setValue(event.step)
        self.stats["Step"].setText(f"{event.step} / {event.total_steps}")
        self.stats["Epoch"].setText("—" if event.epoch is None else f"{event.epoch:.2f}")
        smoothed = self.eta.update(event.step, event.elapsed_s, event.total_steps)
        self.stats["ETA"].setText(format_duration(smoothed if smoothed is not None
                                                  else event.eta_s))
        self.stats["Tokens/s"].setText("—" if event.tokens_per_second is None
                                       else f"{event.tokens_per_second:,.0f}")
        if event.peak_memory_bytes:
            self.stats["Memory"].setText(format_bytes(event.peak_memory_bytes))

    def _on_run_ended(self, final: Event | None) -> None:
        if not self._mine():
            return
        outcome = self.controller.outcome
        if final is None and outcome is not None:
            self.state.setText(outcome.message)  # lost, died or refused there: why
        elif final is None:
            self.state.setText("The training process ended unexpectedly. Resume continues from "
                               "the last complete checkpoint.")
        else:
            self.state.setText(event_text(final) or "")
        self._update_buttons()
        self.completeChanged.emit()
        auto = AppSettings.load(self.context.home).retry_smaller_on_oom
        if self.smaller_button.isVisible() and auto and not self._retried:
            self._retried = True  # one automatic retry, as the setting promises
            self.retry_smaller()

    def _restore_last_run(self) -> None:
        """Rebuild the chart and state of the last run from its stored events."""
        run = self.training.latest_run(self.project_id)
        self._shown_run_id = None if run is None else int(run["id"])
        if run is None:
            self.state.setText("No training yet. The settings come from the Hardware step.")
            return
        events = self.training.events(self.project_id, run["id"])
        for event in events:
            self.show_event(event)
        # A failed run says why, as the command line did when it ended.
        failure = next((e.message for e in reversed(events) if isinstance(e, ErrorEvent)), None)
        machine = reattachable(self.context, self.project_id)
        if run["status"] == "failed" and failure:
            self.state.setText(f"Last run ({run['id']}) failed: {failure}")
        elif machine is not None:
            self.state.setText(f"Run {run['id']} may still be training on {machine}, and "
                               "nothing here follows it: Reattach shows its progress from where "
                               "it was left.")
        else:
            self.state.setText(f"Last run ({run['id']}): {run['status']}.")

    def _update_buttons(self) -> None:
        preparing = self.tasks.is_running("prepare")
        running = self.controller.running or preparing
        run = self.training.latest_run(self.project_id)
        resumable = run is not None and run["status"] in {"interrupted", "cancelled", "failed"}
        self._reattach_to = None if running else reattachable(self.context, self.project_id)
        # Not a second run while the last one may still train on its machine: Reattach (if
        # that machine cannot be reached, the refused reattach ends that run as failed).
        self.start_button.setEnabled(not running and self._reattach_to is None)
        self.stop_button.setEnabled(preparing or (running and self._mine()))
        self.resume_button.setEnabled(not running and resumable and self._reattach_to is None)
        self.reattach_button.setVisible(self._reattach_to is not None)
        if self._reattach_to is not None:
            self.reattach_button.setToolTip(f"Follow run {run['id'] if run else ''} on "
                                            f"{self._reattach_to} again")
        self._show_where()
        self.smaller_button.setVisible(
            not running and self.training.suggested_config(self.project_id) is not None)
        finished = FinishedRuns(self.context).ids(self.project_id)
        self.compare_button.setVisible(len(finished) > 1)
        if len(finished) > 1:
            self.compare_button.setText(f"Compare with run {finished[1]}")

    def _show_where(self) -> None:
        """Where the run trains: the running one's machine, else the Hardware step's choice."""
        if self.controller.running and self._mine():
            machine = self.controller.machine
            self.where.setText(f"Training on {machine} over SSH; its checkpoints and adapter "
                               "are copied back here as they come." if machine else
                               "Training on this computer.")
            set_tone(self.where, None)
            return
        location = train_location(self.context, self.project_id)
        self.where.setText(location.note or f"Trains on: {location.describe()} — chosen on "
                           "the Hardware step.")
        set_tone(self.where, "warning" if location.note else None)

    def compare_runs(self) -> None:
        """The latest finished run beside the one before it (another can be chosen there)."""
        finished = FinishedRuns(self.context).ids(self.project_id)
        if len(finished) < 2:
            return
        runs = [run for run in evaluations.run_scores(self.context, self.project_id)
                if run.run_id in finished]
        self.comparison = RunComparison(runs, finished[0], finished[1], self)
        self.comparison.open()

    def isComplete(self) -> bool:
        run = self.training.latest_run(self.project_id)
        return run is not None and run["status"] == "succeeded"
