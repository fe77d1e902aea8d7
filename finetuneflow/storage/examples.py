"""Dataset examples: the one content hash, inserts, filters, counts and the split."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from finetuneflow.storage.tables import DatasetExample, ExampleSplit, ExampleStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_DATASET = DatasetExample.split != ExampleSplit.PREVIEW  # the preview's examples are not trained on


class ExampleRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

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
