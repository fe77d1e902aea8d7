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
    """Limits on what a document may cost to read, checked before the memory is spent."""

    max_bytes: int = 200 * 1024 * 1024  # the file itself (a user can change it in Settings)
    # Zip-based documents (.docx): each part unpacked, all parts together, and how many times
    # larger than packed a big part may be. Word's own XML packs about 5–20 times; a zip bomb
    # packs hundreds of times.
    max_part_bytes: int = 128 * 1024 * 1024
    max_unpacked_bytes: int = 512 * 1024 * 1024
    max_ratio: float = 200.0
    ratio_from_bytes: int = 8 * 1024 * 1024  # small parts may pack as well as they like


DEFAULT_LIMITS = IngestLimits()


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
