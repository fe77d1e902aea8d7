"""Job records: create, start, report progress, finish, fail, cancel — safe to call from threads.

Every call opens its own short transaction, so worker threads never share one; SQLite's busy
timeout serialises the writes. One job of a kind runs per project at a time.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.storage.runs import RunningJob, SlotTaken
from finetuneflow.storage.tables import Job, JobKind, JobStatus

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext
    from finetuneflow.storage.transaction import Transaction

INTERRUPTED_MESSAGE = "The app stopped while this job was running. Resume it to continue."
MAX_START_ATTEMPTS = 3  # an orphan to interrupt, then a race lost to another process


@dataclass(frozen=True)
class JobInfo:
    id: int
    project_id: str
    kind: JobKind
    status: JobStatus
    progress: float
    message: str
    error: str | None
    params: dict[str, Any]
    result: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    owner_pid: int | None = None  # the process running it

    @classmethod
    def of(cls, job: Job) -> JobInfo:
        return cls(job.id, job.project_id, job.kind, job.status, job.progress, job.message,
                   job.error, dict(job.params), dict(job.result), job.created_at, job.finished_at,
                   job.owner_pid)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (it may have been reused; good enough here)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _windows_process_alive(pid: int) -> bool:
    # os.kill(pid, 0) would terminate the process on Windows.
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    code = ctypes.c_ulong()
    kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
    kernel32.CloseHandle(handle)
    return code.value == 259  # STILL_ACTIVE


class JobService:
    def __init__(self, context: AppContext) -> None:
        self._context = context

    def create(self, project_id: str, kind: JobKind, params: dict[str, Any] | None = None) -> int:
        with self._context.transaction() as tx:
            return tx.jobs.add(project_id, kind, params or {}, os.getpid()).id

    def get(self, job_id: int) -> JobInfo:
        with self._context.transaction() as tx:
            return JobInfo.of(_load(tx, job_id))

    def latest(self, project_id: str, kind: JobKind | None = None) -> JobInfo | None:
        with self._context.transaction() as tx:
            job = tx.jobs.latest(project_id, kind)
            return JobInfo.of(job) if job else None

    def latest_failed(self, project_id: str, kind: JobKind) -> JobInfo | None:
        """The project's latest job of this kind, when it failed: a page reopened later says
        what the dashboard and the command line said."""
        job = self.latest(project_id, kind)
        return job if job is not None and job.status is JobStatus.FAILED else None

    def alive(self, project_id: str | None = None, kind: JobKind | None = None
              ) -> list[JobInfo]:
        """Running jobs whose process still lives (here or another app): a project delete or a
        storage move must wait for them."""
        return [job for job in self._running(project_id, kind) if _owner_alive(job.owner_pid)]

    def start(self, job_id: int) -> None:
        """Run the job in this process. Another running job of its project and kind refuses
        it (the job is then deleted: it never ran), unless that job's process is gone: then
        that one becomes interrupted and this one starts."""
        for _attempt in range(MAX_START_ATTEMPTS):
            try:
                with self._context.transaction() as tx:
                    tx.jobs.start(_load(tx, job_id), os.getpid())
                return
            except SlotTaken as taken:
                holder = taken.holder
            if holder is not None and _owner_alive(holder.owner_pid):
                with self._context.transaction() as tx:
                    tx.jobs.discard(_load(tx, job_id))
                raise UserError(_busy_message(holder))
            if holder is not None:
                self.interrupt(holder.id)
        raise UserError("Another job of this kind keeps starting in this project: try again.")

    def report(self, job_id: int, progress: float, message: str = "") -> None:
        with self._context.transaction() as tx:
            tx.jobs.report(_load(tx, job_id), min(max(progress, 0.0), 1.0), message)

    def succeed(self, job_id: int, result: dict[str, Any] | None = None,
                message: str = "Done") -> None:
        self._finish(job_id, JobStatus.SUCCEEDED, message, progress=1.0, result=result or {})

    def fail(self, job_id: int, error: str) -> None:
        self._finish(job_id, JobStatus.FAILED, "Failed", error=error)

    def cancel(self, job_id: int,
               message: str = "Cancelled; the work done so far is kept.") -> None:
        self._finish(job_id, JobStatus.CANCELLED, message)

    def interrupt(self, job_id: int, message: str = INTERRUPTED_MESSAGE) -> None:
        """A job that stopped before its end and can be resumed (quota spent, app killed)."""
        self._finish(job_id, JobStatus.INTERRUPTED, message)

    def mark_orphans_interrupted(self) -> int:
        """At start-up: jobs still queued or running whose process is gone become
        `interrupted`, and so do their training runs."""
        with self._context.transaction() as tx:
            orphans = [job for job in tx.jobs.unfinished() if not _owner_alive(job.owner_pid)]
            for job in orphans:
                tx.jobs.finish(job, JobStatus.INTERRUPTED, INTERRUPTED_MESSAGE)
            return len(orphans)

    def running(self) -> list[JobInfo]:
        """Jobs running now, in any project and any process (the status bar lists them)."""
        return self._running()

    def resumable(self) -> list[JobInfo]:
        """Interrupted jobs that are still their project's latest of their kind and that the
        person has not dismissed: what the start-up banner offers to resume."""
        with self._context.transaction() as tx:
            return [JobInfo.of(job) for job in tx.jobs.latest_interrupted()
                    if not job.result.get("dismissed")]

    def dismiss(self, job_id: int) -> None:
        with self._context.transaction() as tx:
            tx.jobs.mark_dismissed(_load(tx, job_id))

    def _running(self, project_id: str | None = None, kind: JobKind | None = None
                 ) -> list[JobInfo]:
        with self._context.transaction() as tx:
            return [JobInfo.of(job) for job in tx.jobs.running(project_id, kind)]

    def _finish(self, job_id: int, status: JobStatus, message: str, **values: Any) -> None:
        with self._context.transaction() as tx:
            tx.jobs.finish(_load(tx, job_id), status, message, **values)


def _load(tx: Transaction, job_id: int) -> Job:
    job = tx.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"There is no job {job_id}.")
    return job


def _owner_alive(pid: int | None) -> bool:
    return pid is not None and process_alive(pid)


def _busy_message(holder: RunningJob) -> str:
    return (f"“{holder.project_name}” already has a {holder.kind.value} job running "
            f"(job {holder.id}, process {holder.owner_pid}): wait for it or stop it first.")


class ThrottledProgress:
    """A progress sink that writes a job's progress at most every `interval` seconds.

    Workers may report thousands of times a second; the database needs a few writes.
    """

    def __init__(self, jobs: JobService, job_id: int, interval: float = 0.5) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._interval = interval
        self._last: float | None = None
        self._lock = threading.Lock()

    def __call__(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = self._last is not None and now - self._last < self._interval
            if fraction < 1.0 and recent:
                return
            self._last = now
        self._jobs.report(self._job_id, fraction, message)
