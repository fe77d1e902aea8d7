"""Projects and their typed settings (model, chunking, LLM, training, export)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finetuneflow.storage.tables import Project

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class ProjectRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # --- used by documents: the chunk settings, stored under settings["chunking"]

    def chunk_settings(self, project_id: str) -> dict[str, Any]:
        return dict(self._session.get_one(Project, project_id).settings.get("chunking", {}))

    def set_chunk_settings(self, project_id: str, values: dict[str, Any]) -> None:
        project = self._session.get_one(Project, project_id)
        project.settings = {**project.settings, "chunking": values}
