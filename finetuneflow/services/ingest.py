"""Adding documents to a project: copy, parse, cut into chunks, record — and undo that.

Originals are copied into the project's `raw/` under generated names and never modified. The
extracted text of each file is kept in `chunks/FILE_ID.json`, so changing the model or the chunk
settings re-cuts chunks without parsing the documents again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from finetuneflow.core.atomic import atomic_write_text
from finetuneflow.core.chunking import ChunkSettings, TextChunk, TokenCounter, chunk_text, locate
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
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.settings import AppSettings
from finetuneflow.services.worker_process import run_in_worker
from finetuneflow.storage.tables import Chunk, DatasetExample, FileStatus, SourceFile

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from finetuneflow.services.context import AppContext
    from finetuneflow.storage.home import Home

log = logging.getLogger(__name__)
MB = 1024 * 1024
NO_MODEL_NOTE = "Chunks will be cut once a base model is chosen (they use its tokenizer)."


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


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given, plus the supported files found (recursively) in given folders."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*")
                                if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
                                and not p.name.startswith(".")))
        else:
            found.append(path)
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _copy_original(source: Path, target: Path) -> None:
    """Copy to a temporary name and rename, so a full disk never leaves half a file."""
    temporary = target.with_name(f".{target.name}.part")
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UserError(f"Could not copy {source.name} into the project: {error.strerror}. "
                        "Free some disk space and add it again.") from None


def store_original(home: Home, project_id: str, path: Path, digest: str) -> Path:
    """The project's copy of a file in `raw/`, under a generated safe name (made once)."""
    stem = slugify(path.stem, max_length=40)
    suffix = slugify(path.suffix.lstrip("."), max_length=10, fallback="bin").lower()
    target = home.project_file(project_id, "raw", f"{digest[:12]}-{stem}.{suffix}")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_original(path, target)
    return target


class IngestService:
    def __init__(self, context: AppContext, limits: IngestLimits | None = None) -> None:
        self._context = context
        self._home = context.home
        self._projects = ProjectService(context)
        if limits is None:
            limits = IngestLimits(max_bytes=AppSettings.load(context.home).max_file_mb * MB)
        self._limits = limits

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
        """Add files and folders; every file gets an outcome, none raises for bad content."""
        project_id = self._projects.get(project_ref).id
        files = expand_paths(paths)
        counter = self._token_counter(project_id)
        settings = self.chunk_settings(project_id)
        outcomes: list[FileOutcome] = []
        for index, path in enumerate(files):
            if cancel is not None and cancel.cancelled:
                break
            progress(index / max(len(files), 1), f"Reading {path.name}")
            outcomes.append(self._ingest_one(project_id, path, password, counter, settings))
        progress(1.0, f"{len(outcomes)} of {len(files)} files processed")
        self._projects.touch(project_id)
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

    def _ingest_one(self, project_id: str, path: Path, password: str | None,
                    counter: TokenCounter | None, settings: ChunkSettings) -> FileOutcome:
        name = path.name
        problem = self._precheck(path)
        if problem:
            return FileOutcome(name, "error", problem, path=str(path))
        digest = sha256_of(path)
        existing = self._find_by_hash(project_id, digest)
        if existing is not None and existing.status != FileStatus.ERROR:
            return FileOutcome(
                name, existing.status.value,
                f"Already in the project (same content as “{existing.original_name}”).",
                existing.pages, existing.chars, self._chunk_count(existing.id), existing.id,
                duplicate=True, path=str(path))
        stored = store_original(self._home, project_id, path, digest)
        # Parse the original (same bytes as the copy) so messages name the file the person knows.
        document = load_document(path, password=password, limits=self._limits)
        file_id = self._record_file(project_id, path, stored, digest, document, existing)
        chunks = 0
        if document.text:
            self._save_extracted(project_id, file_id, document)
            chunks = self._cut_and_store(project_id, file_id, document.text,
                                         document.segments, counter, settings)
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

    def _find_by_hash(self, project_id: str, digest: str) -> SourceFile | None:
        with self._context.session() as session:
            return session.scalars(select(SourceFile).where(
                SourceFile.project_id == project_id, SourceFile.sha256 == digest)).first()

    def _record_file(self, project_id: str, path: Path, stored: Path, digest: str,
                     document: Document, existing: SourceFile | None) -> int:
        values = dict(
            original_name=path.name, sha256=digest, kind=document.kind,
            stored_path=str(stored.relative_to(self._home.project_dir(project_id))),
            size=stored.stat().st_size, status=FileStatus(document.status),
            message=document.message, pages=document.pages, chars=document.chars)
        with self._context.session() as session:
            if existing is not None:  # a retry (e.g. with the password) replaces the error row
                row = session.get(SourceFile, existing.id)
                assert row is not None
                for key, value in values.items():
                    setattr(row, key, value)
                session.execute(delete(Chunk).where(Chunk.file_id == row.id))
            else:
                row = SourceFile(project_id=project_id, **values)
                session.add(row)
            session.flush()
            return row.id

    # --- chunks ---------------------------------------------------------------------------------

    def _token_counter(self, project_id: str) -> TokenCounter | None:
        from finetuneflow.services.base_model import ModelService

        choice = ModelService(self._context).current(project_id)
        return TokenCounter.from_model_dir(choice.folder) if choice else None

    def _extracted_path(self, project_id: str, file_id: int) -> Path:
        return self._home.project_file(project_id, "chunks", f"{file_id}.json")

    def _save_extracted(self, project_id: str, file_id: int, document: Document) -> None:
        payload = {"text": document.text, "segments": [asdict(s) for s in document.segments]}
        atomic_write_text(self._extracted_path(project_id, file_id),
                          json.dumps(payload, ensure_ascii=False))

    def _cut_and_store(self, project_id: str, file_id: int, text: str,
                       segments: Sequence[Segment], counter: TokenCounter | None,
                       settings: ChunkSettings) -> int:
        if counter is None:
            return 0
        # Where the section changes (a heading); pages within one section are no cut points.
        headings = [s.start for prev, s in pairwise(segments) if s.section != prev.section]
        pieces = chunk_text(text, counter, settings, heading_offsets=headings)
        spans = [(s.start, s.end, s.page, s.section) for s in segments]
        with self._context.session() as session:
            session.execute(delete(Chunk).where(Chunk.file_id == file_id))
            session.add_all(self._chunk_row(project_id, file_id, piece, spans) for piece in pieces)
        return len(pieces)

    @staticmethod
    def _chunk_row(project_id: str, file_id: int, piece: TextChunk,
                   spans: Sequence[tuple[int, int, int | None, str | None]]) -> Chunk:
        first_page, last_page, section = locate(piece.char_start, piece.char_end, spans)
        return Chunk(project_id=project_id, file_id=file_id, ordinal=piece.ordinal,
                     text=piece.text, token_count=piece.token_count,
                     char_start=piece.char_start, char_end=piece.char_end,
                     page_start=first_page, page_end=last_page,
                     section=section[:500] if section else None)

    def _parsed_file_ids(self, project_id: str) -> list[int]:
        """Files whose text was extracted (so their chunks can be re-cut)."""
        with self._context.session() as session:
            return list(session.scalars(select(SourceFile.id).where(
                SourceFile.project_id == project_id, SourceFile.status != FileStatus.ERROR)))

    def rechunk(self, project_ref: str, progress: ProgressSink = ignore_progress) -> int:
        """Re-cut every file's chunks from its extracted text (model or settings changed)."""
        project_id = self._projects.get(project_ref).id
        counter = self._token_counter(project_id)
        settings = self.chunk_settings(project_id)
        file_ids = self._parsed_file_ids(project_id)
        total = 0
        for index, file_id in enumerate(file_ids):
            progress(index / max(len(file_ids), 1), "Cutting chunks")
            path = self._extracted_path(project_id, file_id)
            if not path.exists():
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
            segments = [Segment(**segment) for segment in data["segments"]]
            total += self._cut_and_store(project_id, file_id, data["text"], segments, counter,
                                         settings)
        return total

    def rechunk_in_worker(self, project_ref: str, progress: ProgressSink = ignore_progress,
                          cancel: CancelToken | None = None) -> int:
        """`rechunk` in a child process; no process is started for a project without files."""
        if not self._parsed_file_ids(self._projects.get(project_ref).id):
            return 0
        return run_in_worker(self._home, "rechunk", {"project": project_ref}, progress,
                             cancel or CancelToken(), "Re-cutting chunks")

    def count_chunks(self, project_ref: str) -> int:
        project_id = self._projects.get(project_ref).id
        with self._context.session() as session:
            return session.scalar(select(func.count()).select_from(Chunk).where(
                Chunk.project_id == project_id)) or 0

    def _chunk_count(self, file_id: int) -> int:
        with self._context.session() as session:
            return session.scalar(select(func.count()).select_from(Chunk).where(
                Chunk.file_id == file_id)) or 0

    # --- listing and removing -------------------------------------------------------------------

    def list_files(self, project_ref: str) -> list[FileRow]:
        project_id = self._projects.get(project_ref).id
        counts = (select(Chunk.file_id, func.count().label("n")).group_by(Chunk.file_id)
                  .subquery())
        query = (select(SourceFile, counts.c.n).outerjoin(counts, counts.c.file_id == SourceFile.id)
                 .where(SourceFile.project_id == project_id).order_by(SourceFile.id))
        with self._context.session() as session:
            return [FileRow(f.id, f.original_name, f.kind, f.status.value, f.message, f.pages,
                            f.chars, n or 0, f.size) for f, n in session.execute(query).all()]

    def remove_file(self, project_ref: str, file_id: int) -> RemovedFile:
        """Remove a file and its chunks; examples made from them stay, without a source chunk."""
        project_id = self._projects.get(project_ref).id
        with self._context.session() as session:
            row = self._load_file(session, project_id, file_id)
            chunk_ids = select(Chunk.id).where(Chunk.file_id == file_id)
            examples = session.scalar(select(func.count()).select_from(DatasetExample).where(
                DatasetExample.chunk_id.in_(chunk_ids))) or 0
            chunks = session.scalar(select(func.count()).select_from(Chunk).where(
                Chunk.file_id == file_id)) or 0
            removed = RemovedFile(row.original_name, chunks, examples)
            stored = self._home.project_dir(project_id) / row.stored_path
            session.delete(row)
        stored.unlink(missing_ok=True)
        self._extracted_path(project_id, file_id).unlink(missing_ok=True)
        return removed

    @staticmethod
    def _load_file(session: Session, project_id: str, file_id: int) -> SourceFile:
        row = session.get(SourceFile, file_id)
        if row is None or row.project_id != project_id:
            raise NotFoundError(f"This project has no file {file_id}.")
        return row

    def has_training_material(self, project_ref: str) -> bool:
        """At least one chunk or one imported example: enough to leave the Data step."""
        project_id = self._projects.get(project_ref).id
        with self._context.session() as session:
            chunk = session.scalar(select(Chunk.id).where(Chunk.project_id == project_id).limit(1))
            example = session.scalar(select(DatasetExample.id).where(
                DatasetExample.project_id == project_id).limit(1))
        return chunk is not None or example is not None
