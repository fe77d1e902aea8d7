"""Reads and writes used by export and chat: RunRepository inherits them (storage/runs.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from finetuneflow.storage.tables import Job, JobKind, JobStatus, Run

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class ExportRunQueries:
    """What the export, the chat and Ollama read: the finished runs and the exports of them."""

    _session: Session

    def exportable(self, project_id: str) -> list[Run]:
        """The project's succeeded runs that saved an adapter, newest first."""
        runs = self._session.scalars(select(Run).where(
            Run.project_id == project_id, Run.status == JobStatus.SUCCEEDED)
            .order_by(Run.id.desc())).all()
        return [run for run in runs if run.artifacts.get("adapter")]

    def export_results(self, project_id: str) -> list[dict[str, Any]]:
        """The results of the project's succeeded export jobs, newest first."""
        jobs = self._session.scalars(select(Job).where(
            Job.project_id == project_id, Job.kind == JobKind.EXPORT,
            Job.status == JobStatus.SUCCEEDED).order_by(Job.id.desc())).all()
        return [dict(job.result) for job in jobs]
