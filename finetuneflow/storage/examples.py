"""Dataset examples: the one content hash, inserts, filters, counts and the split."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from finetuneflow.storage.tables import Chunk, DatasetExample, ExampleSplit, ExampleStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_DATASET = DatasetExample.split != ExampleSplit.PREVIEW  # the preview's examples are not trained on


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

    def training_chats(self, project_id: str) -> list[list[Any]]:
        """The messages of every example a training would use (not rejected, not preview)."""
        return list(self._session.scalars(select(DatasetExample.messages).where(
            DatasetExample.project_id == project_id, _DATASET,
            DatasetExample.status != ExampleStatus.REJECTED)))

    def last_change(self, project_id: str) -> datetime | None:
        """When the dataset's examples last changed."""
        return self._session.scalar(select(func.max(DatasetExample.updated_at)).where(
            DatasetExample.project_id == project_id, _DATASET))

    def has_generated(self, project_id: str) -> bool:
        """Whether a generation (not an import) made any dataset example."""
        return self._session.scalar(select(DatasetExample.id).where(
            DatasetExample.project_id == project_id, _DATASET,
            DatasetExample.chunk_id.is_not(None)).limit(1)) is not None
