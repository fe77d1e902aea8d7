"""Adding documents to a project: copy, parse, cut into chunks, record — and undo that.

Originals are copied into the project's `raw/` under generated names and never modified. The
extracted text of each file is kept in `chunks/FILE_ID.json`, so changing the model or the chunk
settings re-cuts chunks without parsing the documents again.

A file's row, extracted text and chunks are committed together (see storage/documents.py), and
each call of `ingest` is an `ingest` job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Container, Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuneflow.core.atomic import atomic_copy, atomic_write_text
from finetuneflow.core.chunking import ChunkSettings, TextChunk, TokenCounter, chunk_text
from finetuneflow.core.ingest import (
    SUPPORTED_EXTENSIONS,
    Document,
    IngestLimits,
    Segment,
    load_document,
)
from finetuneflow.core.progress import CancelToken, ProgressSink, ignore_progress
from finetuneflow.core.safepath import slugify
from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.services.jobs import JobService, ThrottledProgress
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.settings import AppSettings
from finetuneflow.services.worker_process import run_in_worker
from finetuneflow.storage.documents import FileFacts, Span
from finetuneflow.storage.tables import FileStatus, JobKind, SourceFile

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext
    from finetuneflow.storage.home import Home

log = logging.getLogger(__name__)
MB = 1024 * 1024
NO_MODEL_NOTE = "Chunks will be cut once a base model is chosen (they use its tokenizer)."
COPY_MISSING = "The project's copy of this file is missing. Remove it and add it again."
TEST_PAUSE_VARIABLE = "FINETUNEFLOW_TEST_PAUSE_AT"


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file; the CLI prints it and the Data page shows it."""

    name: str
    status: str  # ok | warning | error
    message: str
    pages: int | None = None
    chars: int = 0
    chunks: int = 0
    file_id: int | None = None
    duplicate: bool = False
    needs_password: bool = False
    path: str = ""  # the file as given, so the GUI can ask for a password and retry

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def nothing_added(outcomes: Sequence[FileOutcome]) -> str | None:
    """One line when no file was added (the ingest failed), None when any was."""
    if not outcomes:
        return "No supported files found (PDF, DOCX, TXT, MD): check the paths."
    if any(outcome.status != "error" for outcome in outcomes):
        return None
    first = outcomes[0]
    more = f" (and {len(outcomes) - 1} more)" if len(outcomes) > 1 else ""
    count = "the file" if len(outcomes) == 1 else f"any of the {len(outcomes)} files"
    reason = " ".join(first.message.split())
    name = "" if first.name in reason else f"{printable(first.name)}: "
    return f"Could not add {count}: {name}{reason}{more}"


@dataclass(frozen=True)
class FileRow:
    id: int
    name: str
    kind: str
    status: str
    message: str
    pages: int | None
    chars: int
    chunks: int
    size: int


@dataclass(frozen=True)
class RemovedFile:
    name: str
    chunks: int
    examples: int  # examples generated from its chunks (kept, now without a source chunk)


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str

    def describe(self) -> str:
        return f"Skipped {printable(self.path.name)}: {self.reason}"


def expand_paths(paths: Iterable[Path]) -> tuple[list[Path], list[SkippedFile]]:
    """Files as given, plus the supported files found (recursively) in given folders; and what
    a folder held that is not read, with why: hidden files, and links that lead outside it
    (a link to /etc/passwd must not become training text)."""
    found: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        root = path.resolve()
        for folder, subfolders, names in os.walk(path):  # links to folders are not followed
            subfolders.sort()
            for name in sorted(names):
                candidate = Path(folder) / name
                if candidate.suffix.lower() not in SUPPORTED_EXTENSIONS:
                    continue
                reason = _skip_reason(candidate, root)
                if reason:
                    skipped.append(SkippedFile(candidate, reason))
                else:
                    found.append(candidate)
    return found, skipped


def _skip_reason(candidate: Path, root: Path) -> str | None:
    if candidate.name.startswith("."):
        return "a hidden file"
    if candidate.is_symlink() and not candidate.resolve().is_relative_to(root):
        return "a link to a file outside the folder"
    if not candidate.is_file():
        return "not a regular file"
    return None


def printable(name: str) -> str:
    """A file name on one line: newlines, tabs and other control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def spans_of(segments: Sequence[Segment]) -> list[Span]:
    return [(s.start, s.end, s.page, s.section) for s in segments]


def store_original(home: Home, project_id: str, path: Path, digest: str) -> Path:
    """The project's copy of a file in `raw/`, under a generated safe name (made once)."""
    if path.parent.resolve() == home.project_subdir(project_id, "raw").resolve():
        return path  # the copy itself, read again (a restore)
    stem = slugify(path.stem, max_length=40)
    suffix = slugify(path.suffix.lstrip("."), max_length=10, fallback="bin").lower()
    target = home.project_file(project_id, "raw", f"{digest[:12]}-{stem}.{suffix}")
    if not target.exists():
        try:
            atomic_copy(path, target)  # a full disk never leaves half a file under the name
        except OSError as error:
            raise UserError(f"Could not copy {path.name} into the project: {error.strerror}. "
                            "Free some disk space and add it again.") from None
    return target


def pause_for_test(home: Home, point: str) -> None:
    """Tests kill the process at a known point: with FINETUNEFLOW_TEST_PAUSE_AT=POINT it
    touches `paused-at-POINT` in the home folder and waits there to be killed."""
    if os.environ.get(TEST_PAUSE_VARIABLE) == point:
        (home.root / f"paused-at-{point}").touch()
        time.sleep(600)


class IngestService:
    def __init__(self, context: AppContext, limits: IngestLimits | None = None) -> None:
        self._context = context
        self._home = context.home
        self._projects = ProjectService(context)
        self._jobs = JobService(context)
        self._limits = limits or AppSettings.load(context.home).ingest_limits()

    # --- settings -------------------------------------------------------------------------------

    def chunk_settings(self, project_ref: str) -> ChunkSettings:
        with self._context.transaction() as tx:
            return tx.projects.settings(project_ref).chunking

    def set_chunk_settings(self, project_ref: str, settings: ChunkSettings,
                           progress: ProgressSink = ignore_progress) -> int:
        """Store new chunk settings; if they changed, re-cut the chunks. Returns chunk count."""
        with self._context.transaction() as tx:
            project_id = tx.projects.resolve(project_ref).id
            changed = tx.projects.save_chunking(project_id, settings)
        return self.rechunk(project_id, progress) if changed else self.count_chunks(project_id)

    def set_chunk_settings_in_worker(self, project_ref: str, settings: ChunkSettings,
                                     progress: ProgressSink, cancel: CancelToken) -> int:
        """`set_chunk_settings` in a child process, so the window stays smooth while it runs."""
        return run_in_worker(self._home, "set_chunk_settings",
                             {"project": project_ref, "settings": asdict(settings)},
                             progress, cancel, "Re-cutting chunks")

    # --- adding files ---------------------------------------------------------------------------

    def ingest(self, project_ref: str, paths: Sequence[Path], *, password: str | None = None,
               progress: ProgressSink = ignore_progress,
               cancel: CancelToken | None = None) -> list[FileOutcome]:
        """Add files and folders; every file gets an outcome, none raises for bad content.

        The work is an `ingest` job, so the job rules (one running per project) cover it.
        """
        project_id = self._projects.get(project_ref).id
        files, skipped = expand_paths(paths)
        for skip in skipped:
            progress(0.0, skip.describe())
        job_id = self._jobs.create(project_id, JobKind.INGEST, {"files": len(files)})
        job_progress = ThrottledProgress(self._jobs, job_id)

        def report(fraction: float, message: str) -> None:
            progress(fraction, message)
            job_progress(fraction, message)

        try:
            self._jobs.start(job_id)  # refused while another ingest of the project runs
            outcomes = self._ingest_files(project_id, files, password, report, cancel,
                                          len(skipped))
        except BaseException as error:
            self._jobs.fail(job_id, str(error) or type(error).__name__)
            raise
        failure = nothing_added(outcomes)
        if cancel is not None and cancel.cancelled:
            self._jobs.cancel(job_id)
        elif failure is not None:  # the outcomes are still returned, for the file list
            self._jobs.fail(job_id, failure)
        else:
            self._jobs.succeed(job_id, {"files": len(outcomes)})
        return outcomes

    def ingest_in_worker(self, project_ref: str, paths: Sequence[Path], *,
                         password: str | None = None, progress: ProgressSink = ignore_progress,
                         cancel: CancelToken | None = None) -> list[FileOutcome]:
        """`ingest` in a child process (see services/worker_process.py): the GUI's way."""
        values = run_in_worker(
            self._home, "ingest",
            {"project": project_ref, "paths": [str(p) for p in paths], "password": password},
            progress, cancel or CancelToken(), "Adding files")
        return [FileOutcome(**value) for value in values]

    def _ingest_files(self, project_id: str, files: Sequence[Path], password: str | None,
                      progress: ProgressSink, cancel: CancelToken | None,
                      skipped: int) -> list[FileOutcome]:
        counter = self._token_counter(project_id)
        settings = self.chunk_settings(project_id)
        unfinished = self._unfinished(project_id) if counter is not None else {}
        outcomes: list[FileOutcome] = []
        for index, path in enumerate(files):
            if cancel is not None and cancel.cancelled:
                break
            progress(index / max(len(files), 1), f"Reading {printable(path.name)}")
            outcomes.append(self._ingest_one(project_id, path, password, counter, settings,
                                             unfinished))
        if counter is not None and not (cancel is not None and cancel.cancelled):
            added_again = {outcome.file_id for outcome in outcomes}
            for file in unfinished.values():
                if file.id not in added_again:
                    self._recut(project_id, file, counter, settings)
        also = f", {skipped} skipped (named above)" if skipped else ""
        progress(1.0, f"{len(outcomes)} of {len(files)} files processed{also}")
        self._projects.touch(project_id)
        return outcomes

    def _unfinished(self, project_id: str) -> dict[int, SourceFile]:
        """Files an older version left with text but no chunks (killed between the two
        writes): added again, they are read again; the others are finished from their copies."""
        with self._context.transaction() as tx:
            files = tx.documents.unfinished(project_id)
        if files:
            log.info("%d file(s) were left without their chunks: finishing them", len(files))
        return {file.id: file for file in files}

    def _ingest_one(self, project_id: str, path: Path, password: str | None,
                    counter: TokenCounter | None, settings: ChunkSettings,
                    unfinished: Container[int]) -> FileOutcome:
        name = path.name
        problem = self._precheck(path)
        if problem:
            return FileOutcome(name, "error", problem, path=str(path))
        digest = sha256_of(path)
        with self._context.transaction() as tx:
            existing = tx.documents.find_by_hash(project_id, digest)
            chunks = 0 if existing is None else tx.documents.chunk_count(existing.id)
        if (existing is not None and existing.status != FileStatus.ERROR
                and existing.id not in unfinished):
            return FileOutcome(
                name, existing.status.value,
                f"Already in the project (same content as “{existing.original_name}”).",
                existing.pages, existing.chars, chunks, existing.id, duplicate=True,
                path=str(path))
        stored = store_original(self._home, project_id, path, digest)
        # Parse the original (same bytes as the copy) so messages name the file the person knows.
        document = load_document(path, password=password, limits=self._limits)
        # A retry (with the password, or of an unfinished file) replaces the row.
        file_id, chunks = self._record(project_id, name, stored, digest, document, counter,
                                       settings, replacing=existing.id if existing else None)
        message = document.message
        if document.text and counter is None:
            message = f"{message} {NO_MODEL_NOTE}".strip()
        return FileOutcome(name, document.status, message, document.pages, document.chars,
                           chunks, file_id, needs_password=document.needs_password,
                           path=str(path))

    def _precheck(self, path: Path) -> str | None:
        if not path.exists():
            return f"{path} does not exist."
        if not path.is_file():
            return f"{path} is not a file."
        size = path.stat().st_size
        if size > self._limits.max_bytes:
            return (f"The file is {size / MB:.0f} MB, over the {self._limits.max_bytes / MB:.0f}"
                    " MB limit. Split it, or raise the limit (finetuneflow settings "
                    "--max-file-mb N).")
        return None

    def _record(self, project_id: str, name: str, stored: Path, digest: str,
                document: Document, counter: TokenCounter | None, settings: ChunkSettings,
                replacing: int | None) -> tuple[int, int]:
        """The file's row, extracted text and chunks, committed together or not at all: a file
        is never `ok` without its chunks. Returns (file id, chunk count)."""
        pieces = self._cut(document.text, document.segments, counter, settings)
        facts = FileFacts(
            original_name=name, sha256=digest, kind=document.kind,
            stored_path=str(stored.relative_to(self._home.project_dir(project_id))),
            size=stored.stat().st_size, status=FileStatus(document.status),
            message=document.message, pages=document.pages, chars=document.chars)
        with self._context.transaction() as tx:
            file_id = tx.documents.save_file(project_id, facts, replacing)
            self._save_extracted(project_id, file_id, document)
            pause_for_test(self._home, "after-file-row")
            chunks = tx.documents.replace_chunks(project_id, file_id, pieces,
                                                 spans_of(document.segments))
        return file_id, chunks

    # --- chunks ---------------------------------------------------------------------------------

    def _token_counter(self, project_id: str) -> TokenCounter | None:
        from finetuneflow.services.base_model import ModelService

        choice = ModelService(self._context).current(project_id)
        return TokenCounter.from_model_dir(choice.folder) if choice else None

    def _extracted_path(self, project_id: str, file_id: int) -> Path:
        return self._home.project_file(project_id, "chunks", f"{file_id}.json")

    def _save_extracted(self, project_id: str, file_id: int, document: Document) -> None:
        path = self._extracted_path(project_id, file_id)
        if not document.text:  # the id may be reused from a file whose adding was killed
            path.unlink(missing_ok=True)
            return
        payload = {"text": document.text, "segments": [asdict(s) for s in document.segments]}
        atomic_write_text(path, json.dumps(payload, ensure_ascii=False))

    @staticmethod
    def _cut(text: str, segments: Sequence[Segment], counter: TokenCounter | None,
             settings: ChunkSettings) -> list[TextChunk]:
        if counter is None or not text:
            return []
        # Where the section changes (a heading); pages within one section are no cut points.
        headings = [s.start for prev, s in pairwise(segments) if s.section != prev.section]
        return chunk_text(text, counter, settings, heading_offsets=headings)

    def _recut(self, project_id: str, file: SourceFile, counter: TokenCounter,
               settings: ChunkSettings) -> int:
        """Replace one file's chunks, cut from its extracted text; returns their count."""
        path = self._extracted_path(project_id, file.id)
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            segments = [Segment(**segment) for segment in data["segments"]]
            pieces = self._cut(data["text"], segments, counter, settings)
            with self._context.transaction() as tx:
                return tx.documents.replace_chunks(project_id, file.id, pieces,
                                                   spans_of(segments))
        if not file.chars:
            return 0
        # An older version was killed before it saved the text: read the project's copy again.
        stored = self._home.project_dir(project_id) / file.stored_path
        if not stored.is_file():
            with self._context.transaction() as tx:
                tx.documents.mark_failed(file.id, COPY_MISSING)
            return 0
        document = load_document(stored, limits=self._limits)
        return self._record(project_id, file.original_name, stored, file.sha256, document,
                            counter, settings, replacing=file.id)[1]

    def rechunk(self, project_ref: str, progress: ProgressSink = ignore_progress) -> int:
        """Re-cut every file's chunks from its extracted text (model or settings changed);
        each file's chunks are replaced in one transaction."""
        project_id = self._projects.get(project_ref).id
        counter = self._token_counter(project_id)
        if counter is None:
            return 0
        settings = self.chunk_settings(project_id)
        with self._context.transaction() as tx:
            files = tx.documents.parsed_files(project_id)
        total = 0
        for index, file in enumerate(files):
            progress(index / max(len(files), 1), "Cutting chunks")
            total += self._recut(project_id, file, counter, settings)
        return total

    def rechunk_in_worker(self, project_ref: str, progress: ProgressSink = ignore_progress,
                          cancel: CancelToken | None = None) -> int:
        """`rechunk` in a child process; no process is started for a project without files."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            if not tx.documents.parsed_files(project_id):
                return 0
        return run_in_worker(self._home, "rechunk", {"project": project_ref}, progress,
                             cancel or CancelToken(), "Re-cutting chunks")

    def count_chunks(self, project_ref: str) -> int:
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            return tx.documents.project_chunk_count(project_id)

    # --- listing and removing -------------------------------------------------------------------

    def list_files(self, project_ref: str) -> list[FileRow]:
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            return [FileRow(f.id, f.original_name, f.kind, f.status.value, f.message, f.pages,
                            f.chars, chunks, f.size)
                    for f, chunks in tx.documents.files_with_chunk_counts(project_id)]

    def remove_file(self, project_ref: str, file_id: int) -> RemovedFile:
        """Remove a file and its chunks; examples made from them stay, without a source chunk."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            row = tx.documents.get_file(project_id, file_id)
            if row is None:
                raise NotFoundError(f"This project has no file {file_id}.")
            removed = RemovedFile(row.original_name, tx.documents.chunk_count(file_id),
                                  tx.examples.count_made_from_file(file_id))
            tx.documents.remove_file(row)
        (self._home.project_dir(project_id) / row.stored_path).unlink(missing_ok=True)
        self._extracted_path(project_id, file_id).unlink(missing_ok=True)
        return removed

    def has_training_material(self, project_ref: str) -> bool:
        """At least one chunk or one imported example: enough to leave the Data step."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            return tx.documents.has_chunks(project_id) or tx.examples.project_has_any(project_id)
