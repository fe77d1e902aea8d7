"""The result types of ingestion: a loaded document, its segments, and the limits that apply."""

from __future__ import annotations

from dataclasses import dataclass, field

DocumentKind = str  # "pdf" | "docx" | "text" | "markdown"
Status = str  # "ok" | "warning" | "error"


@dataclass(frozen=True)
class Segment:
    """A stretch of ``Document.text`` (``text[start:end]``) and where it came from."""

    start: int
    end: int
    page: int | None = None
    section: str | None = None


@dataclass
class Document:
    """What a loader made of one file.

    ``segments`` are in order and separated in ``text`` by exactly one blank line ("\\n\\n").
    A new segment starts at every page (PDF), heading (DOCX, Markdown) and part (headers,
    footers, footnotes). ``boundaries`` are sorted offsets where a chunk may start: every
    segment start and every paragraph start.
    """

    kind: DocumentKind
    status: Status
    message: str
    text: str
    segments: list[Segment]
    boundaries: list[int]
    pages: int | None
    needs_password: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def chars(self) -> int:
        return len(self.text)


@dataclass(frozen=True)
class IngestLimits:
    """Limits a user can change in the settings."""

    max_bytes: int = 200 * 1024 * 1024


def error_document(kind: DocumentKind, message: str, *, needs_password: bool = False) -> Document:
    """A document that could not be loaded: no text, and a message saying what to do."""
    return Document(
        kind=kind,
        status="error",
        message=message,
        text="",
        segments=[],
        boundaries=[],
        pages=None,
        needs_password=needs_password,
    )
