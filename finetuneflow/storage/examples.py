"""Dataset examples: the one content hash, inserts, filters, counts and the split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from finetuneflow.storage.tables import Chunk, DatasetExample

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class ExampleRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # --- used when documents are removed

    def count_made_from_file(self, file_id: int) -> int:
        """Examples generated from the chunks of one file (they stay when the file goes)."""
        return self._session.scalar(select(func.count()).select_from(DatasetExample).join(
            Chunk, DatasetExample.chunk_id == Chunk.id).where(Chunk.file_id == file_id)) or 0

    def project_has_any(self, project_id: str) -> bool:
        """Whether the project has an example (imported ones count as training material)."""
        return self._session.scalar(select(DatasetExample.id).where(
            DatasetExample.project_id == project_id).limit(1)) is not None
