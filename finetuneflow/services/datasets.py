"""Bringing an existing dataset into a project instead of (or beside) documents."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from finetuneflow.core.dataset.formats import FORMATS, CsvColumns, read_dataset
from finetuneflow.services.errors import UserError
from finetuneflow.services.ingest import sha256_of, store_original
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.models import (
    DatasetExample,
    ExampleSource,
    ExampleSplit,
    ExampleStatus,
)

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

MAX_REASON = 200
SHOWN_ERRORS = 5


def content_hash(messages: list[dict[str, str]]) -> str:
    """Identity of an example: its turns with whitespace folded, so re-imports are recognised."""
    folded = [{"role": m["role"], "content": " ".join(m["content"].split())} for m in messages]
    encoded = json.dumps(folded, ensure_ascii=False, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class ImportSummary:
    file: str
    format: str
    imported: int
    rejected: int
    duplicates: int
    errors: list[str] = field(default_factory=list)  # the first few, with line numbers

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "imported": self.imported,
                "rejected": self.rejected, "duplicates": self.duplicates, "errors": self.errors}


class DatasetService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)

    def import_file(self, project_ref: str, path: Path, *, format: str = "auto",
                    system_prompt: str | None = None,
                    csv_columns: CsvColumns | None = None) -> ImportSummary:
        """Import good rows as accepted examples; bad rows are kept as rejected, with reasons."""
        if format != "auto" and format not in FORMATS:
            raise UserError(f"Unknown format {format!r}: use auto or one of {', '.join(FORMATS)}.")
        if not path.is_file():
            raise UserError(f"{path} is not a file.")
        project_id = self._projects.get(project_ref).id
        try:
            result = read_dataset(path, format=format, system_prompt=system_prompt or None,
                                  csv_columns=csv_columns)
        except ValueError as error:
            raise UserError(f"{path.name}: {error}") from None
        self._keep_copy(project_id, path)
        imported, rejected, duplicates, errors = self._store_rows(project_id, result.rows)
        return ImportSummary(path.name, result.format, imported, rejected, duplicates, errors)

    def _store_rows(self, project_id: str, rows: list[Any]) -> tuple[int, int, int, list[str]]:
        imported = rejected = duplicates = 0
        errors: list[str] = []
        with self._context.session() as session:
            known = set(session.scalars(select(DatasetExample.content_hash).where(
                DatasetExample.project_id == project_id)))
            for row in rows:
                if row.error is not None:
                    rejected += 1
                    if len(errors) < SHOWN_ERRORS:
                        errors.append(f"line {row.line}: {row.error}")
                    session.add(self._rejected(project_id, row))
                    continue
                digest = content_hash(row.messages)
                if digest in known:
                    duplicates += 1
                    continue
                known.add(digest)
                imported += 1
                session.add(DatasetExample(
                    project_id=project_id, split=ExampleSplit.TRAIN, messages=row.messages,
                    status=ExampleStatus.ACCEPTED, content_hash=digest,
                    source=ExampleSource.IMPORTED))
        return imported, rejected, duplicates, errors

    @staticmethod
    def _rejected(project_id: str, row: Any) -> DatasetExample:
        # The raw line is kept as the example's only turn so the person can see and fix it.
        messages = [{"role": "user", "content": row.raw}]
        return DatasetExample(
            project_id=project_id, split=ExampleSplit.TRAIN, messages=messages,
            status=ExampleStatus.REJECTED,
            reject_reason=f"line {row.line}: {row.error}"[:MAX_REASON],
            content_hash=hashlib.sha256(row.raw.encode()).hexdigest(),
            source=ExampleSource.IMPORTED)

    def _keep_copy(self, project_id: str, path: Path) -> None:
        store_original(self._context.home, project_id, path, sha256_of(path))
