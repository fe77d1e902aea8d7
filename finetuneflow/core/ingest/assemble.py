"""Building a Document's text from pieces, keeping offsets that refer to the normalised text."""

from __future__ import annotations

from .model import Document, DocumentKind, Segment
from .normalise import normalise_text

SEGMENT_SEPARATOR = "\n\n"


class TextAssembler:
    """Normalises each piece, joins the pieces with a blank line and records where each went."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._segments: list[Segment] = []
        self._boundaries: list[int] = []
        self._length = 0

    def add(self, raw: str, *, page: int | None = None, section: str | None = None) -> bool:
        """Add one segment; return False (and add nothing) when it has no text."""
        text = normalise_text(raw)
        if not text:
            return False
        if self._parts:
            self._parts.append(SEGMENT_SEPARATOR)
            self._length += len(SEGMENT_SEPARATOR)
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        self._segments.append(Segment(start=start, end=self._length, page=page, section=section))
        self._boundaries.append(start)
        self._boundaries.extend(start + offset for offset in _paragraph_starts(text))
        return True

    def visible_chars(self) -> int:
        """Characters that are not whitespace, over all segments so far."""
        return sum(len(part) - _whitespace(part) for part in self._parts)

    def finish(self, kind: DocumentKind, *, pages: int | None, warnings: list[str]) -> Document:
        return Document(
            kind=kind,
            status="warning" if warnings else "ok",
            message=" ".join(warnings),
            text="".join(self._parts),
            segments=list(self._segments),
            boundaries=list(self._boundaries),
            pages=pages,
            warnings=list(warnings),
        )


def _paragraph_starts(text: str) -> list[int]:
    starts = []
    position = text.find("\n\n")
    while position != -1:
        starts.append(position + 2)
        position = text.find("\n\n", position + 2)
    return starts


def _whitespace(text: str) -> int:
    return text.count(" ") + text.count("\n")
