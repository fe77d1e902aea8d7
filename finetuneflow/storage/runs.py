"""Jobs and training runs: a job's and its run's status change in one call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from finetuneflow.storage.tables import Job, JobKind, JobStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class JobRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # --- read by generation

    def results_of_succeeded(self, project_id: str, kind: JobKind) -> list[dict[str, Any]]:
        """The results of the project's succeeded jobs of this kind, newest first."""
        return list(self._session.scalars(select(Job.result).where(
            Job.project_id == project_id, Job.kind == kind,
            Job.status == JobStatus.SUCCEEDED).order_by(Job.id.desc())))


class RunRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

