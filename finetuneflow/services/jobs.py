"""Job records: create, start, report progress, finish, fail, cancel — safe to call from threads.

Every call opens its own short session, so worker threads never share one; SQLite's busy timeout
serialises the writes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from finetuneflow.services.errors import NotFoundError
from finetuneflow.storage.tables import Job, JobKind, JobStatus, utcnow

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

INTERRUPTED_MESSAGE = "The app stopped while this job was running. Resume it to continue."


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

    @classmethod
    def of(cls, job: Job) -> JobInfo:
        return cls(job.id, job.project_id, job.kind, job.status, job.progress, job.message,
                   job.error, dict(job.params), dict(job.result), job.created_at, job.finished_at)


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
        with self._context.session() as session:
            job = Job(project_id=project_id, kind=kind, params=params or {})
            session.add(job)
            session.flush()
            return job.id

    def get(self, job_id: int) -> JobInfo:
        with self._context.session() as session:
            return JobInfo.of(self._load(session, job_id))

    def latest(self, project_id: str, kind: JobKind | None = None) -> JobInfo | None:
        query = select(Job).where(Job.project_id == project_id)
        if kind is not None:
            query = query.where(Job.kind == kind)
        with self._context.session() as session:
            job = session.scalars(query.order_by(Job.id.desc()).limit(1)).first()
            return JobInfo.of(job) if job else None

    def alive(self, project_id: str | None = None) -> list[JobInfo]:
        """Running jobs whose process still lives (here or another app): a project delete or a
        storage move must wait for them."""
        query = select(Job).where(Job.status == JobStatus.RUNNING)
        if project_id is not None:
            query = query.where(Job.project_id == project_id)
        with self._context.session() as session:
            jobs = session.scalars(query.order_by(Job.id)).all()
            return [JobInfo.of(job) for job in jobs
                    if job.owner_pid is not None and process_alive(job.owner_pid)]

    def start(self, job_id: int) -> None:
        self._update(job_id, status=JobStatus.RUNNING, started_at=utcnow(), error=None,
                     owner_pid=os.getpid(), finished_at=None)

    def report(self, job_id: int, progress: float, message: str = "") -> None:
        self._update(job_id, progress=min(max(progress, 0.0), 1.0), message=message)

    def succeed(self, job_id: int, result: dict[str, Any] | None = None,
                message: str = "Done") -> None:
        self._finish(job_id, JobStatus.SUCCEEDED, progress=1.0, message=message,
                     result=result or {})

    def fail(self, job_id: int, error: str) -> None:
        self._finish(job_id, JobStatus.FAILED, error=error, message="Failed")

    def cancel(self, job_id: int,
               message: str = "Cancelled; the work done so far is kept.") -> None:
        self._finish(job_id, JobStatus.CANCELLED, message=message)

    def interrupt(self, job_id: int, message: str = INTERRUPTED_MESSAGE) -> None:
        """A job that stopped before its end and can be resumed (quota spent, app killed)."""
        self._finish(job_id, JobStatus.INTERRUPTED, message=message)

    def mark_orphans_interrupted(self) -> int:
        """At start-up: jobs still `running` whose process is gone become `interrupted`."""
        with self._context.session() as session:
            running = session.scalars(select(Job).where(Job.status == JobStatus.RUNNING)).all()
            orphans = [job for job in running
                       if job.owner_pid is None or not process_alive(job.owner_pid)]
            for job in orphans:
                job.status = JobStatus.INTERRUPTED
                job.message = INTERRUPTED_MESSAGE
                job.finished_at = utcnow()
            return len(orphans)

    def running(self) -> list[JobInfo]:
        """Jobs running now, in any project and any process (the status bar lists them)."""
        with self._context.session() as session:
            jobs = session.scalars(select(Job).where(Job.status == JobStatus.RUNNING)
                                   .order_by(Job.id)).all()
            return [JobInfo.of(job) for job in jobs]

    def resumable(self) -> list[JobInfo]:
        """Interrupted jobs that are still their project's latest of their kind and that the
        person has not dismissed: what the start-up banner offers to resume."""
        with self._context.session() as session:
            latest = (select(Job.project_id, Job.kind, func.max(Job.id).label("id"))
                      .group_by(Job.project_id, Job.kind).subquery())
            jobs = session.scalars(select(Job).join(latest, Job.id == latest.c.id).where(
                Job.status == JobStatus.INTERRUPTED).order_by(Job.id)).all()
            return [JobInfo.of(job) for job in jobs if not job.result.get("dismissed")]

    def dismiss(self, job_id: int) -> None:
        with self._context.session() as session:
            job = self._load(session, job_id)
            job.result = {**job.result, "dismissed": True}

    def _finish(self, job_id: int, status: JobStatus, **values: Any) -> None:
        self._update(job_id, status=status, finished_at=utcnow(), owner_pid=None, **values)

    def _update(self, job_id: int, **values: Any) -> None:
        with self._context.session() as session:
            job = self._load(session, job_id)
            for name, value in values.items():
                setattr(job, name, value)

    @staticmethod
    def _load(session: Any, job_id: int) -> Job:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"There is no job {job_id}.")
        return job


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
