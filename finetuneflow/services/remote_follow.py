"""The app's side of a run on a machine, Qt-free: start it there (or reattach), follow its events
into the same recorder as a local run, stop it, or detach from it when the window closes.

gui/training_controller.py runs `RemoteFollow.run` on a thread of its own (a run lasts hours:
not on the shared thread pool) and passes its events on as Qt signals; the command line's
counterpart is cli/training.py `_train_there`. Both end the job through `follow_remote`, so a
run ends the same way (finished, stopped, failed, interrupted) whoever watched it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from finetuneflow.core.child_protocol import Event
from finetuneflow.core.progress import CancelToken
from finetuneflow.services.errors import UserError
from finetuneflow.services.jobs import JobService
from finetuneflow.services.machines import last_check
from finetuneflow.services.remote_training import (
    RemoteRun,
    RemoteState,
    RemoteTraining,
    follow_remote,
)
from finetuneflow.services.training import PreparedRun, RunRecorder, TrainingService
from finetuneflow.storage.tables import JobKind, JobStatus

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

log = logging.getLogger(__name__)

# Latest runs that may still train on their machine while nothing here follows them.
FOLLOWABLE = (JobStatus.INTERRUPTED.value, JobStatus.RUNNING.value)


class Ending(StrEnum):
    ENDED = "ended"        # the trainer there ended: its job says how (as the CLI's does)
    LOST = "lost"          # the connection stayed lost through every retry; it trains on
    DETACHED = "detached"  # this app stopped following (closing); it trains on
    REFUSED = "refused"    # it did not start (or reattach): the message says why


@dataclass(frozen=True)
class RemoteOutcome:
    ending: Ending
    machine: str
    message: str = ""  # what to tell the person when the run has no final event


def lost_message(machine: str) -> str:
    return (f"Lost the connection to {machine}; the training goes on there. Reattach follows "
            "it again from where this computer stopped reading.")


def detached_message(machine: str) -> str:
    return (f"FineTuneFlow was closed while the run trained on {machine}; it goes on there. "
            "Reattach on the Train step follows it again.")


class RemoteFollow:
    """One run on a machine, followed by this app until it ends, is lost or is detached."""

    def __init__(self, context: AppContext, prepared: PreparedRun, machine: str, *,
                 processes: int = 1, attach: bool = False) -> None:
        self._context = context
        self.prepared = prepared
        self.machine = machine
        self._processes = processes
        self._attach = attach
        self._cancel = CancelToken()
        self._detached = threading.Event()
        self._lock = threading.Lock()  # the run, set by the follow thread, read by detach()
        self._run: RemoteRun | None = None

    def run(self, recorder: RunRecorder, on_event: Callable[[Event], None],
            on_message: Callable[[str], None]) -> RemoteOutcome:
        """Start or reattach, then follow to the end (blocking). `recorder` has begun; every
        line is stored before the offset that passes it is saved, so a later reattach shows
        no step twice and none missing. Never raises: a failure ends the job and says why."""
        try:
            return self._run_to_end(recorder, on_event, on_message)
        except Exception as error:  # a bug or an unreadable remote state: the job must end
            log.exception("following the run on %s failed", self.machine)
            message = f"Following the run on {self.machine} failed: {error}"
            recorder.process_ended(None, message, failed=True)
            return RemoteOutcome(Ending.REFUSED, self.machine, message)

    def _run_to_end(self, recorder: RunRecorder, on_event: Callable[[Event], None],
                    on_message: Callable[[str], None]) -> RemoteOutcome:
        try:
            run = RemoteTraining(self._context).begin(recorder, self.prepared, self.machine,
                                                      self._processes, self._attach, on_message)
        except UserError as error:  # the job has failed with the reason
            return RemoteOutcome(Ending.REFUSED, self.machine, str(error))
        with self._lock:
            self._run = run
        if self._detached.is_set():
            run.detach()  # asked for while it started: it trains on, unfollowed
        on_message(f"Training on {self.machine}: it goes on there if the connection drops or "
                   "FineTuneFlow closes.")

        def on_line(line: str) -> None:
            if (event := recorder.handle_line(line)) is not None:
                on_event(event)

        project = self.prepared.project_id
        follow_remote(run, recorder, project, on_line, self._cancel, notice=on_message)
        if run.ended:  # without a final event, the job says why (the trainer died there)
            job = JobService(self._context).get(self.prepared.job_id)
            return RemoteOutcome(Ending.ENDED, self.machine,
                                 "" if recorder.final else job.error or job.message)
        # The job was interrupted with the command line's words; the app's replace them.
        detached = self._detached.is_set()
        message = (detached_message if detached else lost_message)(self.machine)
        JobService(self._context).interrupt(self.prepared.job_id, message)
        return RemoteOutcome(Ending.DETACHED if detached else Ending.LOST, self.machine, message)

    def stop(self) -> None:
        """Send the stop line there; killed there if it has not ended after the grace period
        (RemoteRun.follow's watcher)."""
        self._cancel.cancel()

    def detach(self) -> None:
        """Stop following without stopping the run there; `run` returns soon."""
        self._detached.set()
        with self._lock:
            run = self._run
        if run is not None:
            run.detach()


def remote_processes(context: AppContext, machine: str) -> int:
    """One process per GPU that the machine's last check found (one without a check)."""
    checked = last_check(context.home, machine)
    gpus = checked.probe.gpus if checked is not None and checked.probe is not None else []
    return max(1, len(gpus))


def reattachable(context: AppContext, project_ref: str) -> str | None:
    """The machine the project's latest run trains on while nothing follows it (the connection
    was lost, the app closed or died), or None."""
    training = TrainingService(context)
    run = training.latest_run(project_ref)
    if run is None or run["status"] not in FOLLOWABLE:
        return None
    try:
        prepared = training.latest_prepared(project_ref)
        if JobService(context).alive(prepared.project_id, JobKind.TRAIN):
            return None  # followed already (here, or by `finetuneflow train --on`)
        state = RemoteState.load(prepared.job_path.parent)
    except (UserError, OSError, ValueError, TypeError) as error:  # its files are gone or torn
        log.warning("Cannot tell where the latest run trains: %s", error)
        return None
    return None if state is None else state.machine


def prepare_reattach(context: AppContext, project_ref: str) -> tuple[PreparedRun, str]:
    """A job that follows the latest run again, and its machine; refused (UserError) before
    any job exists when the run is not on a machine or its machine was removed."""
    training = TrainingService(context)
    machine = reattachable(context, project_ref)
    if machine is None:
        raise UserError("The latest run is not training on a machine: there is nothing to "
                        "reattach to.")
    RemoteTraining(context).attach(training.latest_prepared(project_ref), machine)
    return training.prepare_attach(project_ref), machine
