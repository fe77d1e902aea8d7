"""Projects: create, find, list, rename, duplicate, delete, and remember the wizard step."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, insert, select

from finetuneflow.core.steps import STEP_KEYS, step_index
from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.storage.tables import (
    Base,
    Chunk,
    DatasetExample,
    Job,
    JobStatus,
    Project,
    SourceFile,
    new_uuid,
    utcnow,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from sqlalchemy.orm import Session

    from finetuneflow.services.context import AppContext
    from finetuneflow.storage.home import Home

MAX_NAME_LENGTH = 200
NOTE_KEY = "note"  # in Project.settings: what the dashboard says about a project (the sample)
# A copy keeps the documents and the dataset, not the runs: it can go as far as Hardware.
LAST_STEP_OF_A_COPY = "hardware"


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
    last_activity: datetime | None = None  # the project's or its latest job's last change
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name, "base_model": self.base_model,
            "current_step": self.current_step,
            "created_at": self.created_at.isoformat() + "Z",
            "updated_at": self.updated_at.isoformat() + "Z",
            "latest_job": None if self.latest_job_kind is None else
            {"kind": self.latest_job_kind, "status": str(self.latest_job_status)},
            "last_activity": (self.last_activity or self.updated_at).isoformat() + "Z",
            "note": self.note,
        }


def _summary(project: Project, job: Job | None = None) -> ProjectSummary:
    activity = max(project.updated_at, job.updated_at) if job else project.updated_at
    return ProjectSummary(project.id, project.name, project.base_model, project.current_step,
                          project.created_at, project.updated_at,
                          job.kind.value if job else None, job.status if job else None,
                          activity, str(project.settings.get(NOTE_KEY) or ""))


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
        """All projects, most recently active first, each with its latest job's state."""
        latest_job = (select(Job.project_id, func.max(Job.id).label("job_id"))
                      .group_by(Job.project_id).subquery())
        query = (select(Project, Job)
                 .outerjoin(latest_job, latest_job.c.project_id == Project.id)
                 .outerjoin(Job, Job.id == latest_job.c.job_id)
                 .order_by(Project.name))
        with self._context.session() as session:
            found = [_summary(project, job) for project, job in session.execute(query).all()]
        return sorted(found, key=lambda summary: summary.last_activity or summary.updated_at,
                      reverse=True)

    def get(self, ref: str) -> ProjectSummary:
        with self._context.session() as session:
            return _summary(self.resolve(session, ref))

    def rename(self, ref: str, name: str) -> ProjectSummary:
        with self._context.session() as session:
            project = self.resolve(session, ref)
            project.name = clean_name(name)
            session.flush()
            return _summary(project)

    def duplicate(self, ref: str, name: str | None = None) -> ProjectSummary:
        """A new project with this one's settings, task, documents (rows, originals and
        extracted text) and dataset examples; jobs, runs and their files stay behind."""
        home = self._context.home
        new_id = new_uuid()
        try:
            with self._context.session() as session:
                source = self.resolve(session, ref)
                copy = Project(
                    id=new_id, name=clean_name(name) if name else _copy_name(session, source.name),
                    base_model=source.base_model, task_config=dict(source.task_config),
                    settings=dict(source.settings),
                    current_step=STEP_KEYS[min(step_index(source.current_step),
                                               step_index(LAST_STEP_OF_A_COPY))])
                session.add(copy)
                session.flush()
                home.create_project_dirs(new_id)
                _copy_documents_and_dataset(session, home, source.id, new_id)
                summary = _summary(copy)
        except BaseException:
            shutil.rmtree(home.project_dir(new_id), ignore_errors=True)
            raise
        return summary

    def delete(self, ref: str) -> ProjectSummary:
        """Delete the project's rows (children cascade) and its storage folder; refused while
        one of its jobs runs (its process would write into the deleted folder)."""
        from finetuneflow.services.jobs import JobService

        summary = self.get(ref)
        if running := JobService(self._context).alive(summary.id):
            raise UserError(f"“{summary.name}” is busy ({running[0].kind.value} running): stop "
                            "it first, then delete the project.")
        with self._context.session() as session:
            session.delete(self.resolve(session, summary.id))
        shutil.rmtree(self._context.home.project_dir(summary.id), ignore_errors=True)
        return summary

    def set_note(self, ref: str, note: str) -> None:
        with self._context.session() as session:
            project = self.resolve(session, ref)
            project.settings = {**project.settings, NOTE_KEY: note}

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



def _copy_name(session: Session, name: str) -> str:
    """"X (copy)", or "X (copy 2)" and so on when that name is taken."""
    taken = set(session.scalars(select(Project.name)))
    for number in range(1, len(taken) + 2):
        suffix = " (copy)" if number == 1 else f" (copy {number})"
        candidate = name[:MAX_NAME_LENGTH - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: some suffix is always free")


def _copy_documents_and_dataset(session: Session, home: Home, source_id: str,
                                target_id: str) -> None:
    """Copy the rows (ids remapped) and the files under raw/ and chunks/ of one project."""
    source_dir, target_dir = home.project_dir(source_id), home.project_dir(target_id)
    file_ids = _copy_rows(session, SourceFile, source_id, target_id)
    chunk_ids = _copy_rows(session, Chunk, source_id, target_id,
                           lambda row: row.update(file_id=file_ids[row["file_id"]]))
    _copy_rows(session, DatasetExample, source_id, target_id,
               lambda row: row.update(chunk_id=chunk_ids.get(row["chunk_id"])))
    _copy_tree(source_dir / "raw", target_dir / "raw")
    for old, new in file_ids.items():  # the extracted text is named by file id
        extracted = home.project_file(source_id, "chunks", f"{old}.json")
        if extracted.exists():
            shutil.copy2(extracted, home.project_file(target_id, "chunks", f"{new}.json"))


def _copy_rows(session: Session, model: type[Base], source_id: str, target_id: str,
               remap: Callable[[dict[str, object]], None] | None = None) -> dict[int, int]:
    """Insert copies of a project's rows of one table; return old id → new id."""
    table = model.__table__
    rows = [dict(row._mapping) for row in session.execute(
        select(table).where(table.c.project_id == source_id).order_by(table.c.id))]
    if not rows:
        return {}
    old_ids = [row.pop("id") for row in rows]
    for row in rows:
        row["project_id"] = target_id
        if remap is not None:
            remap(row)
    new_ids = session.scalars(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).all()
    return dict(zip(old_ids, new_ids, strict=True))


def _copy_tree(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
