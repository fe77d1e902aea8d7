"""Map a chunk's character span back to the pages and section of the document it came from."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

# (start, end, page, section): a piece of the document text with where it came from.
SegmentTuple = tuple[int, int, int | None, str | None]


def locate(
    chunk_start: int, chunk_end: int, segments: Sequence[SegmentTuple]
) -> tuple[int | None, int | None, str | None]:
    """(first page, last page, section) of the text span [chunk_start, chunk_end).

    `segments` must be sorted by start and must not overlap (as ingestion produces them); objects
    with `start`, `end`, `page` and `section` attributes work as well as tuples. Pages are the
    lowest and highest page of the segments the span touches (None if none has a page). The
    section is the one covering most characters of the span, the earlier one on a tie; it may be
    None when the bulk of the span is in no section. Cost: O(log n + segments touched).
    """
    chunk_end = max(chunk_end, chunk_start + 1)  # an empty span is located by its position
    first = max(0, bisect_right(segments, chunk_start, key=_start) - 1)
    pages: list[int] = []
    section_chars: dict[str | None, int] = {}
    for index in range(first, len(segments)):
        start, end, page, section = _fields(segments[index])
        if start >= chunk_end:
            break
        overlap = min(end, chunk_end) - max(start, chunk_start)
        if overlap <= 0:
            continue
        if page is not None:
            pages.append(page)
        section_chars[section] = section_chars.get(section, 0) + overlap
    if not section_chars:
        return None, None, None
    section = max(section_chars, key=section_chars.__getitem__)  # first seen wins a tie
    return (min(pages), max(pages), section) if pages else (None, None, section)


def _fields(segment: Any) -> SegmentTuple:
    if hasattr(segment, "start"):
        return segment.start, segment.end, segment.page, segment.section
    start, end, page, section = segment
    return start, end, page, section


def _start(segment: Any) -> int:
    start: int = segment.start if hasattr(segment, "start") else segment[0]
    return start
