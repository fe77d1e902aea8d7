"""Projects: create, find, list, rename, delete, and remember the wizard step."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from finetuneflow.core.steps import step_index
from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.storage.models import Job, JobStatus, Project, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from finetuneflow.services.context import AppContext

MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class ProjectSummary:
    id: str
    name: str
    base_model: str | None
    current_step: str
    created_at: datetime
    updated_at: datetime
    latest_job_kind: str | None = None
    latest_job_status: JobStatus | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name, "base_model": self.base_model,
            "current_step": self.current_step,
            "created_at": self.created_at.isoformat() + "Z",
            "updated_at": self.updated_at.isoformat() + "Z",
            "latest_job": None if self.latest_job_kind is None else
            {"kind": self.latest_job_kind, "status": str(self.latest_job_status)},
        }


def _summary(project: Project, job: Job | None = None) -> ProjectSummary:
    return ProjectSummary(project.id, project.name, project.base_model, project.current_step,
                          project.created_at, project.updated_at,
                          job.kind.value if job else None, job.status if job else None)


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise UserError("A project needs a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise UserError(f"A project name can have at most {MAX_NAME_LENGTH} characters.")
    return name


class ProjectService:
    def __init__(self, context: AppContext) -> None:
        self._context = context

    def create(self, name: str) -> ProjectSummary:
        with self._context.session() as session:
            project = Project(name=clean_name(name))
            session.add(project)
            session.flush()
            summary = _summary(project)
        self._context.home.create_project_dirs(summary.id)
        return summary

    def list(self) -> list[ProjectSummary]:
        """All projects, most recently touched first, each with its latest job's state."""
        latest_job = (select(Job.project_id, func.max(Job.id).label("job_id"))
                      .group_by(Job.project_id).subquery())
        query = (select(Project, Job)
                 .outerjoin(latest_job, latest_job.c.project_id == Project.id)
                 .outerjoin(Job, Job.id == latest_job.c.job_id)
                 .order_by(Project.updated_at.desc(), Project.name))
        with self._context.session() as session:
            return [_summary(project, job) for project, job in session.execute(query).all()]

    def get(self, ref: str) -> ProjectSummary:
        with self._context.session() as session:
            return _summary(self.resolve(session, ref))

    def rename(self, ref: str, name: str) -> ProjectSummary:
        with self._context.session() as session:
            project = self.resolve(session, ref)
            project.name = clean_name(name)
            session.flush()
            return _summary(project)

    def delete(self, ref: str) -> ProjectSummary:
        """Delete the project's rows (children cascade) and its storage folder."""
        with self._context.session() as session:
            project = self.resolve(session, ref)
            summary = _summary(project)
            session.delete(project)
        shutil.rmtree(self._context.home.project_dir(summary.id), ignore_errors=True)
        return summary

    def set_step(self, ref: str, step: str) -> None:
        step_index(step)  # validates
        with self._context.session() as session:
            self.resolve(session, ref).current_step = step

    def touch(self, project_id: str) -> None:
        with self._context.session() as session:
            self.resolve(session, project_id).updated_at = utcnow()

    @staticmethod
    def resolve(session: Session, ref: str) -> Project:
        """A project by id, unique id prefix (≥ 4 characters) or exact name."""
        ref = ref.strip()
        project = session.get(Project, ref)
        if project is not None:
            return project
        by_name = session.scalars(select(Project).where(Project.name == ref)).all()
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            raise UserError(f"Several projects are named {ref!r}: use the project id instead.")
        if len(ref) >= 4:
            by_prefix = session.scalars(select(Project).where(Project.id.startswith(ref))).all()
            if len(by_prefix) == 1:
                return by_prefix[0]
            if len(by_prefix) > 1:
                raise UserError(f"{ref!r} matches several projects: give more of the id.")
        raise NotFoundError(f"No project {ref!r}. See `finetuneflow project list`.")

