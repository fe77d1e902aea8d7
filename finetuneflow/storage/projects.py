"""Projects and their typed settings (model, chunking, LLM, training, export)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finetuneflow.storage.tables import Project

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class ProjectRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # --- used by generation: the task and the LLM settings

    def task_config(self, project_id: str) -> dict[str, Any]:
        return self._project(project_id).task_config

    def set_task_config(self, project_id: str, config: dict[str, Any]) -> None:
        self._project(project_id).task_config = config

    def setting(self, project_id: str, key: str) -> Any:
        """One entry of the project's settings (llm, chunking…), None when unset."""
        return self._project(project_id).settings.get(key)

    def set_setting(self, project_id: str, key: str, value: Any) -> None:
        project = self._project(project_id)
        project.settings = {**project.settings, key: value}  # a new dict: the JSON is rewritten

    def _project(self, project_id: str) -> Project:
        project = self._session.get(Project, project_id)
        if project is None:
            raise LookupError(f"no project {project_id}")
        return project
