"""Bringing an existing dataset into a project instead of (or beside) documents."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuneflow.core.dataset.formats import FORMATS, CsvColumns
from finetuneflow.core.dataset.jsonl import write_jsonl
from finetuneflow.core.dataset.split import DEFAULT_EVAL_FRACTION, DEFAULT_SEED
from finetuneflow.core.progress import CancelToken, ProgressSink, ignore_progress
from finetuneflow.core.training.config import TrainingConfig
from finetuneflow.core.units import format_bytes
from finetuneflow.services.dataset_reader import READER_LOG, ReadRequest, reading
from finetuneflow.services.errors import UserError
from finetuneflow.services.ingest import MB, sha256_of, store_original
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.settings import AppSettings
from finetuneflow.services.worker_process import run_in_worker

if TYPE_CHECKING:
    from collections.abc import Iterator

    from finetuneflow.services.context import AppContext
    from finetuneflow.storage.import_batch import ImportBatch, ImportCounts

SHOWN_ERRORS = 5
STOPPED_IMPORT = "Import the same file again to add the rest: the lines stored are skipped."


@dataclass(frozen=True)
class ImportSummary:
    file: str
    format: str
    imported: int
    rejected: int
    duplicates: int
    errors: list[str] = field(default_factory=list)  # the first few, with line numbers
    stopped: bool = False  # cancelled: the batches stored so far are kept

    def describe(self) -> str:
        """One line for people: the command line prints it, the window shows it."""
        stopped = " (stopped)" if self.stopped else ""
        return (f"{self.file} ({self.format}){stopped}: {self.imported:,} imported, "
                f"{self.rejected:,} rejected, {self.duplicates:,} already present")

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "imported": self.imported,
                "rejected": self.rejected, "duplicates": self.duplicates, "errors": self.errors,
                "stopped": self.stopped}


@dataclass
class _Tally:
    """An import's counts, added up batch by batch; only the first few errors are kept."""

    imported: int = 0
    rejected: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, counts: ImportCounts) -> None:
        self.imported += counts.imported
        self.duplicates += counts.duplicates
        self.rejected += len(counts.rejected)
        room = SHOWN_ERRORS - len(self.errors)
        self.errors += [f"line {row.line}: {row.error}" for row in counts.rejected[:room]]


class _ReadProgress:
    """Progress through the file by line (its lines counted first: ~1 s a gigabyte)."""

    def __init__(self, path: Path, sink: ProgressSink) -> None:
        self._sink = sink
        with path.open("rb") as file:
            self._lines = max(1, sum(block.count(b"\n") for block in
                                     iter(lambda: file.read(1 << 20), b"")))
        self._name = path.name

    def report(self, line: int, imported: int) -> None:
        self._sink(min(line / self._lines, 1.0),
                   f"{self._name}: line {line:,} of {self._lines:,}, {imported:,} imported")


@dataclass(frozen=True)
class _Limits:
    """The import limits of the app's settings, in the units the reading checks."""

    file_bytes: int
    line_bytes: int
    chars_per_token: int

    @classmethod
    def of(cls, settings: AppSettings) -> _Limits:
        return cls(settings.max_dataset_mb * MB, settings.max_line_mb * MB,
                   settings.example_chars_per_token)

    def check_size(self, path: Path) -> None:
        size = path.stat().st_size
        if size > self.file_bytes:
            raise UserError(f"{path.name} is {format_bytes(size)}; a dataset file can have at "
                            f"most {format_bytes(self.file_bytes)}: split it and import the "
                            "parts, or raise the limit in Settings (finetuneflow settings "
                            "--max-dataset-mb N).")


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
                    system_prompt: str | None = None, csv_columns: CsvColumns | None = None,
                    progress: ProgressSink = ignore_progress,
                    cancel: CancelToken | None = None) -> ImportSummary:
        """Import good rows as accepted examples; bad rows are kept as rejected, with reasons.

        The file is read line by line and stored in batches, each its own transaction: a
        stop (cancel, Ctrl-C, a killed process) keeps the batches stored, and importing the
        file again adds only what is missing."""
        if format != "auto" and format not in FORMATS:
            raise UserError(f"Unknown format {format!r}: use auto or one of {', '.join(FORMATS)}.")
        if not path.is_file():
            raise UserError(f"{path} is not a file.")
        limits = _Limits.of(AppSettings.load(self._context.home))
        limits.check_size(path)
        with self._context.transaction() as tx:
            project_id = tx.projects.resolve(project_ref).id
            training = tx.projects.settings(project_id).training or TrainingConfig()
        longest = limits.chars_per_token * training.max_seq_length
        request = ReadRequest(str(path), format, system_prompt or None,
                              asdict(csv_columns) if csv_columns else None, limits.line_bytes,
                              longest, limits.chars_per_token)
        try:
            with reading(request, self._context.home.logs_dir / READER_LOG) as (found, batches):
                self._keep_copy(project_id, path)
                counts = self._store_in_batches(project_id, batches,
                                                _ReadProgress(path, progress), cancel)
        except ValueError as error:
            raise UserError(f"{path.name}: {error}") from None
        return ImportSummary(path.name, found, counts.imported, counts.rejected,
                             counts.duplicates, counts.errors,
                             stopped=cancel is not None and cancel.cancelled)

    def import_in_worker(self, project_ref: str, path: Path, *, format: str = "auto",
                         system_prompt: str | None = None,
                         csv_columns: CsvColumns | None = None,
                         progress: ProgressSink = ignore_progress,
                         cancel: CancelToken | None = None) -> ImportSummary:
        """`import_file` in a child process (see services/worker_process.py): the GUI's way,
        so the window stays smooth and Cancel works."""
        value = run_in_worker(
            self._context.home, "import_dataset",
            {"project": project_ref, "path": str(path), "format": format,
             "system_prompt": system_prompt,
             "csv_columns": asdict(csv_columns) if csv_columns else None},
            progress, cancel or CancelToken(), "Importing the dataset")
        return ImportSummary(**value)

    def _store_in_batches(self, project_id: str, batches: Iterator[ImportBatch],
                          progress: _ReadProgress, cancel: CancelToken | None) -> _Tally:
        tally = _Tally()
        try:
            for batch in batches:
                with self._context.transaction() as tx:
                    tally.add(tx.examples.add_imported(project_id, batch))
                progress.report(batch.last_line, tally.imported)
                if cancel is not None and cancel.cancelled:
                    break
        finally:
            with self._context.transaction() as tx:
                tx.examples.end_import()
        return tally

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
