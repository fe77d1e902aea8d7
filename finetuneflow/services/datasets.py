"""Bringing an existing dataset into a project instead of (or beside) documents."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from finetuneflow.core.dataset.formats import FORMATS, CsvColumns, read_dataset
from finetuneflow.core.dataset.jsonl import write_jsonl
from finetuneflow.core.dataset.split import DEFAULT_EVAL_FRACTION, DEFAULT_SEED, assign_splits
from finetuneflow.services.errors import UserError
from finetuneflow.services.ingest import sha256_of, store_original
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import (
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


@dataclass(frozen=True)
class DatasetFiles:
    """The written train/eval files and what went into them."""

    train_path: Path
    eval_path: Path
    train: int
    eval: int
    rejected: int
    rejected_by_reason: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"train_path": str(self.train_path), "eval_path": str(self.eval_path),
                "train": self.train, "eval": self.eval, "rejected": self.rejected,
                "rejected_by_reason": self.rejected_by_reason}


def _group_key(example: DatasetExample) -> str:
    # Examples from one chunk stay together; imported ones stand alone.
    if example.chunk_id is not None:
        return f"chunk:{example.chunk_id}"
    return f"example:{example.content_hash}"


def reason_label(reason: str | None) -> str:
    """The kind of a reject, to count and filter by: "line 7: not valid JSON (…)" → "not valid
    JSON", "duplicate of 12" → "duplicate", "ungrounded: the quote … (best match 0.71)" →
    "ungrounded"."""
    text = reason or "unspecified"
    if text.startswith("line ") and ": " in text:
        text = text.split(": ", 1)[1]
    text = text.split("; ")[0].split(" (")[0]
    kind = text.split(": ")[0]
    return re.sub(r" of\b.*$", "", kind).strip() or "unspecified"


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

    # --- writing the training files -------------------------------------------------------------

    def export(self, project_ref: str, eval_fraction: float = DEFAULT_EVAL_FRACTION,
               seed: int = DEFAULT_SEED) -> DatasetFiles:
        """Split the accepted examples (grouped by chunk) and write train.jsonl / eval.jsonl."""
        project_id = self._projects.get(project_ref).id
        with self._context.session() as session:
            examples = session.scalars(select(DatasetExample).where(
                DatasetExample.project_id == project_id,
                DatasetExample.split != ExampleSplit.PREVIEW).order_by(DatasetExample.id)).all()
            usable = [e for e in examples if e.status != ExampleStatus.REJECTED]
            if not usable:
                raise UserError("There are no accepted examples to write: generate or import "
                                "some first.")
            sides = assign_splits({_group_key(e) for e in usable}, eval_fraction, seed)
            for example in usable:
                example.split = ExampleSplit(sides[_group_key(example)])
            train = [e.messages for e in usable if e.split == ExampleSplit.TRAIN]
            evaluation = [e.messages for e in usable if e.split == ExampleSplit.EVAL]
            rejected = Counter(reason_label(e.reject_reason) for e in examples
                               if e.status == ExampleStatus.REJECTED)
        home = self._context.home
        train_path = home.project_file(project_id, "datasets", "train.jsonl")
        eval_path = home.project_file(project_id, "datasets", "eval.jsonl")
        write_jsonl(train_path, train)
        write_jsonl(eval_path, evaluation)
        return DatasetFiles(train_path, eval_path, len(train), len(evaluation),
                            sum(rejected.values()), dict(rejected))

    def files_are_current(self, project_ref: str) -> bool:
        """The dataset files exist and no example changed after they were written."""
        project_id = self._projects.get(project_ref).id
        home = self._context.home
        paths = [home.project_file(project_id, "datasets", name)
                 for name in ("train.jsonl", "eval.jsonl")]
        if not all(path.exists() for path in paths):
            return False
        written = min(path.stat().st_mtime for path in paths)
        with self._context.session() as session:
            changed = session.scalar(select(func.max(DatasetExample.updated_at)).where(
                DatasetExample.project_id == project_id))
        return changed is None or changed.replace(tzinfo=UTC).timestamp() <= written
