"""Projects: create, find, list, rename, duplicate, delete, and remember the wizard step."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from finetuneflow.core.project_summary import ProjectSummary
from finetuneflow.services.errors import UserError
from finetuneflow.storage.tables import Job, Project

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext
    from finetuneflow.storage.home import Home


def _summary(project: Project, job: Job | None = None) -> ProjectSummary:
    activity = max(project.updated_at, job.updated_at) if job else project.updated_at
    return ProjectSummary(project.id, project.name, project.base_model, project.current_step,
                          project.created_at, project.updated_at,
                          job.kind.value if job else None, job.status if job else None,
                          activity, project.note)


class ProjectService:
    def __init__(self, context: AppContext) -> None:
        self._context = context

    def create(self, name: str) -> ProjectSummary:
        with self._context.transaction() as tx:
            summary = _summary(tx.projects.create(name))
        self._context.home.create_project_dirs(summary.id)
        self._context.home.write_manifest(summary.id, summary.name)
        return summary

    def list(self) -> list[ProjectSummary]:
        """All projects, most recently active first, each with its latest job's state."""
        with self._context.transaction() as tx:
            found = [_summary(project, job) for project, job in tx.projects.list_with_latest_job()]
        return sorted(found, key=lambda summary: summary.last_activity or summary.updated_at,
                      reverse=True)

    def get(self, ref: str) -> ProjectSummary:
        with self._context.transaction() as tx:
            return _summary(tx.projects.resolve(ref))

    def rename(self, ref: str, name: str) -> ProjectSummary:
        with self._context.transaction() as tx:
            summary = _summary(tx.projects.rename(ref, name))
        self._context.home.write_manifest(summary.id, summary.name)
        return summary

    def duplicate(self, ref: str, name: str | None = None) -> ProjectSummary:
        """A new project with this one's settings, task, documents (rows, originals and
        extracted text) and dataset examples; jobs, runs and their files stay behind."""
        home = self._context.home
        copy_id: str | None = None
        try:
            with self._context.transaction() as tx:
                source_id = tx.projects.resolve(ref).id
                copy, file_ids = tx.projects.duplicate(source_id, name)
                copy_id = copy.id
                home.create_project_dirs(copy_id)
                _copy_files(home, source_id, copy_id, file_ids)
                summary = _summary(copy)
                home.write_manifest(copy_id, summary.name)
        except BaseException:
            if copy_id is not None:
                shutil.rmtree(home.project_dir(copy_id), ignore_errors=True)
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
        with self._context.transaction() as tx:
            tx.projects.delete(summary.id)
        shutil.rmtree(self._context.home.project_dir(summary.id), ignore_errors=True)
        return summary

    def set_note(self, ref: str, note: str) -> None:
        with self._context.transaction() as tx:
            tx.projects.set_note(ref, note)

    def set_step(self, ref: str, step: str) -> None:
        with self._context.transaction() as tx:
            tx.projects.set_step(ref, step)

    def touch(self, project_id: str) -> None:
        with self._context.transaction() as tx:
            tx.projects.touch(project_id)


def _copy_files(home: Home, source_id: str, target_id: str, file_ids: dict[int, int]) -> None:
    """Copy the originals under raw/ and the extracted text (named by file id) of a project."""
    source_dir, target_dir = home.project_dir(source_id), home.project_dir(target_id)
    if (source_dir / "raw").is_dir():
        shutil.copytree(source_dir / "raw", target_dir / "raw", dirs_exist_ok=True)
    for old, new in file_ids.items():
        extracted = home.project_file(source_id, "chunks", f"{old}.json")
        if extracted.exists():
            shutil.copy2(extracted, home.project_file(target_id, "chunks", f"{new}.json"))
