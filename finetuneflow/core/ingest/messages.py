"""User-facing sentences shared by several loaders: what happened, then what to do."""

from __future__ import annotations

GARBLED = (
    "The text looks garbled (font without a Unicode map?): check the chunks, or use an OCR'd "
    "copy. Detail: {reason}."
)
GARBLED_PAGES = (
    "{pages} garbled (font without a Unicode map?): check the chunks, or use an OCR'd copy. "
    "Detail: {reason}."
)


def garbled_warning(reason: str) -> str:
    return GARBLED.format(reason=reason)


def garbled_pages_warning(pages: list[int], page_count: int, reason: str) -> str:
    if len(pages) == page_count:
        return garbled_warning(reason)
    return GARBLED_PAGES.format(pages=pages_verb(pages, "looks", "look"), reason=reason)


def pages_verb(pages: list[int], singular: str, plural: str) -> str:
    """ "Page 3 has", "Pages 1-2 have": a page list with its verb."""
    return f"{page_list(pages)} {singular if len(pages) == 1 else plural}"


def page_list(pages: list[int], *, limit: int = 12) -> str:
    """ "Page 3", "Pages 1-4, 9" or "Pages 1-4, 9 and 20 more", for 1-based page numbers."""
    ranges: list[str] = []
    shown = 0
    index = 0
    while index < len(pages) and len(ranges) < limit:
        first = last = pages[index]
        while index + 1 < len(pages) and pages[index + 1] == last + 1:
            index += 1
            last = pages[index]
        ranges.append(str(first) if first == last else f"{first}-{last}")
        shown = index + 1
        index += 1
    label = "Page" if len(pages) == 1 else "Pages"
    rest = len(pages) - shown
    more = f" and {rest} more" if rest else ""
    return f"{label} {', '.join(ranges)}{more}"
