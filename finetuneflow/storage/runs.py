"""Jobs and training runs: a job's and its run's status change in one call.

A training run follows its job: every status change of a job goes through `JobRepository`,
which writes the same status to the run attached to that job, so the two cannot disagree.
The database allows one running job per project and kind (`uq_jobs_one_running`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from finetuneflow.storage.tables import Job, JobKind, JobStatus, Project, Run, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class RunningJob:
    """The job that already holds a project's (project, kind) slot."""

    id: int
    kind: JobKind
    project_name: str
    owner_pid: int | None


class SlotTaken(Exception):
    """Another job of this project and kind is running. `holder` is None when the database
    refused the start (a race with another process) before the holder could be read."""

    def __init__(self, holder: RunningJob | None) -> None:
        super().__init__(holder)
        self.holder = holder


class JobRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def results_of_succeeded(self, project_id: str, kind: JobKind) -> list[dict[str, Any]]:
        """The results of the project's succeeded jobs of this kind, newest first."""
        return [dict(result) for result in self._session.scalars(select(Job.result).where(
            Job.project_id == project_id, Job.kind == kind,
            Job.status == JobStatus.SUCCEEDED).order_by(Job.id.desc()))]

    def add(self, project_id: str, kind: JobKind, params: dict[str, Any], owner_pid: int
            ) -> Job:
        job = Job(project_id=project_id, kind=kind, params=params, owner_pid=owner_pid)
        self._session.add(job)
        self._session.flush()
        return job

    def get(self, job_id: int) -> Job | None:
        return self._session.get(Job, job_id)

    def latest(self, project_id: str, kind: JobKind | None = None) -> Job | None:
        query = select(Job).where(Job.project_id == project_id)
        if kind is not None:
            query = query.where(Job.kind == kind)
        return self._session.scalars(query.order_by(Job.id.desc()).limit(1)).first()

    def running(self, project_id: str | None = None, kind: JobKind | None = None
                ) -> list[Job]:
        query = select(Job).where(Job.status == JobStatus.RUNNING)
        if project_id is not None:
            query = query.where(Job.project_id == project_id)
        if kind is not None:
            query = query.where(Job.kind == kind)
        return list(self._session.scalars(query.order_by(Job.id)))

    def unfinished(self) -> list[Job]:
        """Jobs queued or running: at start-up, those whose process is gone are orphans."""
        return list(self._session.scalars(select(Job).where(
            Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))).order_by(Job.id)))

    def latest_interrupted(self) -> list[Job]:
        """Interrupted jobs that are still their project's latest of their kind."""
        latest = (select(Job.project_id, Job.kind, func.max(Job.id).label("id"))
                  .group_by(Job.project_id, Job.kind).subquery())
        return list(self._session.scalars(select(Job).join(latest, Job.id == latest.c.id)
                                          .where(Job.status == JobStatus.INTERRUPTED)
                                          .order_by(Job.id)))

    def start(self, job: Job, owner_pid: int) -> None:
        """Mark the job (and its run) running in this process, unless another job of its
        project and kind runs: then raise SlotTaken and change nothing."""
        holder = self._session.scalars(select(Job).where(
            Job.project_id == job.project_id, Job.kind == job.kind,
            Job.status == JobStatus.RUNNING, Job.id != job.id)).first()
        if holder is not None:
            project = self._session.get(Project, holder.project_id)
            raise SlotTaken(RunningJob(holder.id, holder.kind, project.name if project else "",
                                       holder.owner_pid))
        now = utcnow()
        self._set(job, status=JobStatus.RUNNING, started_at=now, error=None,
                  owner_pid=owner_pid, finished_at=None)
        try:
            self._session.flush()  # the partial unique index decides a race between processes
        except IntegrityError:
            raise SlotTaken(None) from None
        self._runs_of(job, status=JobStatus.RUNNING, started_at=now, finished_at=None)

    def report(self, job: Job, progress: float, message: str) -> None:
        self._set(job, progress=progress, message=message)

    def finish(self, job: Job, status: JobStatus, message: str, **values: Any) -> None:
        """End the job (and its run) with `status`: succeeded, failed, cancelled, interrupted."""
        now = utcnow()
        self._set(job, status=status, message=message, finished_at=now, owner_pid=None,
                  **values)
        self._runs_of(job, status=status, finished_at=now)

    def mark_dismissed(self, job: Job) -> None:
        job.result = {**job.result, "dismissed": True}

    def discard(self, job: Job) -> None:
        """Delete a job that never started, with the new run that was waiting for it (a
        resumed run stays as it was; the foreign key clears its link)."""
        self._session.execute(delete(Run).where(Run.job_id == job.id, Run.started_at.is_(None)))
        self._session.delete(job)

    def _runs_of(self, job: Job, **values: Any) -> None:
        self._session.execute(update(Run).where(Run.job_id == job.id).values(**values))

    @staticmethod
    def _set(job: Job, **values: Any) -> None:
        for name, value in values.items():
            setattr(job, name, value)


class RunRepository:
    """Training runs. Their status is written only by `JobRepository`, from their job's."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def exportable(self, project_id: str) -> list[Run]:
        """The project's succeeded runs that saved an adapter, newest first."""
        runs = self._session.scalars(select(Run).where(
            Run.project_id == project_id, Run.status == JobStatus.SUCCEEDED)
            .order_by(Run.id.desc())).all()
        return [run for run in runs if run.artifacts.get("adapter")]

    def add(self, project_id: str, config: dict[str, Any]) -> Run:
        run = Run(project_id=project_id, config=config, status=JobStatus.QUEUED)
        self._session.add(run)
        self._session.flush()
        return run

    def get(self, run_id: int) -> Run | None:
        return self._session.get(Run, run_id)

    def latest(self, project_id: str) -> Run | None:
        return self._session.scalars(select(Run).where(Run.project_id == project_id)
                                     .order_by(Run.id.desc()).limit(1)).first()

    def latest_succeeded(self, project_id: str) -> Run | None:
        return self._session.scalars(select(Run).where(
            Run.project_id == project_id, Run.status == JobStatus.SUCCEEDED)
            .order_by(Run.id.desc()).limit(1)).first()

    def restore_succeeded(self, project_id: str, run_id: int, config: dict[str, Any],
                          metrics: dict[str, Any], artifacts: dict[str, Any]) -> bool:
        """A finished run again, under the number its folders carry (artifacts/run-N); False
        when another run has that number."""
        if self.get(run_id) is not None:
            return False
        self._session.add(Run(id=run_id, project_id=project_id, config=config,
                              status=JobStatus.SUCCEEDED, metrics=metrics, artifacts=artifacts))
        self._session.flush()
        return True

    def attach_job(self, run_id: int, job_id: int) -> None:
        """The job that carries this run (a new run, or a resume): its status follows."""
        self._load(run_id).job_id = job_id

    def record_outcome(self, run_id: int, metrics: dict[str, Any], artifacts: dict[str, Any]
                       ) -> None:
        """The run's summary, written when it ends (the events file holds the rest)."""
        run = self._load(run_id)
        run.metrics = {**run.metrics, **metrics}
        run.artifacts = {**run.artifacts, **artifacts}

    def _load(self, run_id: int) -> Run:
        run = self.get(run_id)
        if run is None:
            raise LookupError(f"there is no run {run_id}")
        return run

    # --- project status (issue 14) --------------------------------------------------------------

    def status_counts(self, project_id: str) -> dict[JobStatus, int]:
        """The project's training runs by status."""
        return {status: int(count) for status, count in self._session.execute(
            select(Run.status, func.count()).where(Run.project_id == project_id)
            .group_by(Run.status)).all()}
