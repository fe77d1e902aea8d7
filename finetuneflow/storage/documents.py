"""Documents: source files and their chunks, a file and all its chunks in one transaction.

The rule this aggregate keeps: a file row with text and a tokenizer is committed together with
its chunks. The service calls `save_file` and then `replace_chunks` inside one
`context.transaction()`, so a crash between the two leaves neither (and no "ok" file without
chunks). Older versions committed them separately: `unfinished` finds what they left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, exists, func, select

from finetuneflow.core.chunking import TextChunk, locate
from finetuneflow.storage.projects import record_in_manifest
from finetuneflow.storage.tables import Chunk, FileStatus, SourceFile

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# (start, end, page, section) of each segment of a file's text, to place a chunk in the file.
Span = tuple[int, int, int | None, str | None]


@dataclass(frozen=True)
class FileFacts:
    """What is recorded about one added file (its row's columns, without ids)."""

    original_name: str
    sha256: str
    kind: str
    stored_path: str  # relative to the project folder
    size: int
    status: FileStatus
    message: str
    pages: int | None
    chars: int


class DocumentRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # --- files ----------------------------------------------------------------------------------

    def find_by_hash(self, project_id: str, digest: str) -> SourceFile | None:
        """The project's file with this content (the unique index allows one)."""
        return self._session.scalars(select(SourceFile).where(
            SourceFile.project_id == project_id, SourceFile.sha256 == digest)).first()

    def get_file(self, project_id: str, file_id: int) -> SourceFile | None:
        row = self._session.get(SourceFile, file_id)
        return row if row is not None and row.project_id == project_id else None

    def save_file(self, project_id: str, facts: FileFacts, replacing: int | None = None) -> int:
        """Insert a file row, or overwrite row `replacing` (a retry of a failed or unfinished
        file keeps its id); its old chunks go. Returns the id; call `replace_chunks` next, in
        the same transaction."""
        record_in_manifest(self._session, project_id)  # the folder keeps the file's name
        if replacing is None:
            row = SourceFile(project_id=project_id, **asdict(facts))
            self._session.add(row)
        else:
            row = self._session.get_one(SourceFile, replacing)
            for name, value in asdict(facts).items():
                setattr(row, name, value)
            self._session.execute(delete(Chunk).where(Chunk.file_id == replacing))
        self._session.flush()
        return row.id

    def give_names(self, project_id: str, names: dict[str, str]) -> int:
        """Give the project's files these original names, by stored path (a restore: the
        files were read again from their copies); returns how many were named."""
        rows = self._session.scalars(select(SourceFile).where(
            SourceFile.project_id == project_id, SourceFile.stored_path.in_(names)))
        named = 0
        for row in rows:
            row.original_name, named = names[row.stored_path], named + 1
        if named:
            record_in_manifest(self._session, project_id)
        return named

    def mark_failed(self, file_id: int, message: str) -> None:
        row = self._session.get_one(SourceFile, file_id)
        row.status, row.message = FileStatus.ERROR, message

    def remove_file(self, row: SourceFile) -> None:
        """Delete the row; its chunks go with it (ON DELETE CASCADE)."""
        record_in_manifest(self._session, row.project_id)
        self._session.delete(row)

    def parsed_files(self, project_id: str) -> list[SourceFile]:
        """Files whose text was extracted (so their chunks can be re-cut)."""
        return list(self._session.scalars(select(SourceFile).where(
            SourceFile.project_id == project_id, SourceFile.status != FileStatus.ERROR)
            .order_by(SourceFile.id)))

    def unfinished(self, project_id: str) -> list[SourceFile]:
        """Files with text but no chunk, which an older version could leave when killed between
        committing the file and its chunks. Only meaningful once the project has a tokenizer
        (before that no file has chunks). One query."""
        return list(self._session.scalars(select(SourceFile).where(
            SourceFile.project_id == project_id, SourceFile.status != FileStatus.ERROR,
            SourceFile.chars > 0, ~exists().where(Chunk.file_id == SourceFile.id))
            .order_by(SourceFile.id)))

    def files_with_chunk_counts(self, project_id: str) -> list[tuple[SourceFile, int]]:
        counts = (select(Chunk.file_id, func.count().label("n")).group_by(Chunk.file_id)
                  .subquery())
        query = (select(SourceFile, counts.c.n)
                 .outerjoin(counts, counts.c.file_id == SourceFile.id)
                 .where(SourceFile.project_id == project_id).order_by(SourceFile.id))
        return [(row, n or 0) for row, n in self._session.execute(query).all()]

    # --- chunks ---------------------------------------------------------------------------------

    def replace_chunks(self, project_id: str, file_id: int, pieces: Sequence[TextChunk],
                       spans: Sequence[Span]) -> int:
        """The file's chunks become `pieces` (placed in pages and sections by `spans`)."""
        self._session.execute(delete(Chunk).where(Chunk.file_id == file_id))
        self._session.add_all(_chunk_row(project_id, file_id, piece, spans) for piece in pieces)
        self._session.flush()
        return len(pieces)

    def chunk_count(self, file_id: int) -> int:
        return self._session.scalar(select(func.count()).select_from(Chunk).where(
            Chunk.file_id == file_id)) or 0

    def project_chunk_count(self, project_id: str) -> int:
        return self._session.scalar(select(func.count()).select_from(Chunk).where(
            Chunk.project_id == project_id)) or 0

    def has_chunks(self, project_id: str) -> bool:
        return self._session.scalar(select(Chunk.id).where(
            Chunk.project_id == project_id).limit(1)) is not None


def _chunk_row(project_id: str, file_id: int, piece: TextChunk, spans: Sequence[Span]) -> Chunk:
    first_page, last_page, section = locate(piece.char_start, piece.char_end, spans)
    return Chunk(project_id=project_id, file_id=file_id, ordinal=piece.ordinal,
                 text=piece.text, token_count=piece.token_count,
                 char_start=piece.char_start, char_end=piece.char_end,
                 page_start=first_page, page_end=last_page,
                 section=section[:500] if section else None)
