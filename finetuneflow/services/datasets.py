"""Bringing an existing dataset into a project instead of (or beside) documents."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuneflow.core.dataset.formats import FORMATS, CsvColumns, read_dataset
from finetuneflow.core.dataset.jsonl import write_jsonl
from finetuneflow.core.dataset.split import DEFAULT_EVAL_FRACTION, DEFAULT_SEED
from finetuneflow.services.errors import UserError
from finetuneflow.services.ingest import sha256_of, store_original
from finetuneflow.services.projects import ProjectService

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

SHOWN_ERRORS = 5


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
        with self._context.transaction() as tx:
            counts = tx.examples.add_imported(project_id, result.rows)
        errors = [f"line {row.line}: {row.error}" for row in counts.rejected[:SHOWN_ERRORS]]
        return ImportSummary(path.name, result.format, counts.imported, len(counts.rejected),
                             counts.duplicates, errors)

    def _keep_copy(self, project_id: str, path: Path) -> None:
        store_original(self._context.home, project_id, path, sha256_of(path))

    # --- writing the training files -------------------------------------------------------------

    def export(self, project_ref: str, eval_fraction: float = DEFAULT_EVAL_FRACTION,
               seed: int = DEFAULT_SEED) -> DatasetFiles:
        """Split the accepted examples (grouped by chunk) and write train.jsonl / eval.jsonl."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            split = tx.examples.split_for_training(project_id, eval_fraction, seed)
            if not split.train and not split.eval:
                raise UserError("There are no accepted examples to write: generate or import "
                                "some first.")
            rejected = Counter[str]()
            for reason, count in tx.examples.reject_reasons(project_id):
                rejected[reason_label(reason)] += count
        home = self._context.home
        train_path = home.project_file(project_id, "datasets", "train.jsonl")
        eval_path = home.project_file(project_id, "datasets", "eval.jsonl")
        write_jsonl(train_path, split.train)
        write_jsonl(eval_path, split.eval)
        return DatasetFiles(train_path, eval_path, len(split.train), len(split.eval),
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
        with self._context.transaction() as tx:
            changed = tx.examples.last_change(project_id)
        return changed is None or changed.replace(tzinfo=UTC).timestamp() <= written
