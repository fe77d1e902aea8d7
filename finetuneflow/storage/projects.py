"""Projects and their typed settings (model, chunking, LLM, training, export)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finetuneflow.storage.tables import Project

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class ProjectRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def setting(self, project_id: str, key: str) -> Any:
        """One section of the project's settings (None when never saved)."""
        project = self._session.get(Project, project_id)
        return project.settings.get(key) if project else None

    def put_setting(self, project_id: str, key: str, value: Any) -> None:
        project = self._session.get(Project, project_id)
        if project is not None:
            project.settings = {**project.settings, key: value}
