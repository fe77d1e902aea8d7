"""Plain-text and Markdown files."""

from __future__ import annotations

import re

from .assemble import TextAssembler
from .encoding import decode_text
from .garble import looks_garbled
from .messages import garbled_warning
from .model import Document, error_document

UNKNOWN_ENCODING = (
    "{name} is not a text file, or its text encoding could not be recognised: if it is text, "
    "save it as UTF-8 and add it again."
)
BINARY_CONTENT = (
    "{name} is not a text file (it looks like binary data): add the document itself, as PDF, "
    "DOCX, TXT or Markdown."
)
NO_TEXT = "The file has no text (only spaces or blank lines): check that it is the right file."

# Control characters other than tab, LF, CR, FF (and ESC, for ANSI colours) are rare in text.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_MAX_CONTROL_SHARE = 0.01

_ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(?:=+|-+)[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
# Lines a setext underline cannot turn into a heading: lists, quotes, tables, HTML, headings.
_NOT_SETEXT_TEXT = re.compile(r" {0,3}(?:[-*+>|<#]|\d+[.)])")

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HTML_TAG = re.compile(r"<[^>]{1,200}>")
_MAX_TITLE = 120

Section = tuple[str | None, list[str]]


def load_text(data: bytes, *, kind: str, name: str) -> Document:
    """Decode and load a text (``kind="text"``) or Markdown (``kind="markdown"``) file."""
    decoded = decode_text(data)
    if decoded is None:
        return error_document(kind, UNKNOWN_ENCODING.format(name=name))
    text = _unify_line_breaks(decoded.text)
    if len(_CONTROLS.findall(text)) > _MAX_CONTROL_SHARE * max(1, len(text)):
        return error_document(kind, BINARY_CONTENT.format(name=name))
    assembler = TextAssembler()
    if kind == "markdown":
        for title, lines in markdown_sections(text):
            assembler.add("\n".join(lines), section=title)
    else:
        assembler.add(text)
    warnings = []
    if not assembler.visible_chars():
        warnings.append(NO_TEXT)
    reason = looks_garbled(text)
    if reason:
        warnings.append(garbled_warning(reason))
    return assembler.finish(kind, pages=None, warnings=warnings)


def _unify_line_breaks(text: str) -> str:
    # Only CRLF and CR: str.splitlines() would also break at \x85, \x0c, \u2028…
    return text.replace("\r\n", "\n").replace("\r", "\n")


def markdown_sections(text: str) -> list[Section]:
    """Split Markdown at its ATX ("# Title") and setext ("Title\\n=====") headings.

    Each section is (heading text or None before the first heading, its lines including the
    heading). Lines inside fenced code blocks are never headings.
    """
    lines = text.split("\n")
    front_matter = _front_matter_length(lines)
    sections: list[Section] = [(None, lines[:front_matter])]
    fence: str | None = None
    for line in lines[front_matter:]:
        lines = sections[-1][1]
        if fence is not None:
            lines.append(line)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        opening = _FENCE.match(line)
        atx = _ATX_HEADING.fullmatch(line)
        if opening:
            fence = opening.group(1)
            lines.append(line)
        elif atx:
            sections.append((_clean_title(atx.group(2) or ""), [line]))
        elif _is_setext_underline(line, lines):
            title_line = lines.pop()
            sections.append((_clean_title(title_line), [title_line, line]))
        else:
            lines.append(line)
    return [(title, lines) for title, lines in sections if title is not None or any(lines)]


def _front_matter_length(lines: list[str]) -> int:
    """Lines of a leading YAML block ("---" ... "---"), whose closing line is no heading rule."""
    if not lines or lines[0].strip() != "---":
        return 0
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() in ("---", "..."):
            return index + 1
    return 0


def _is_setext_underline(line: str, lines: list[str]) -> bool:
    if not lines or not _SETEXT_UNDERLINE.fullmatch(line):
        return False
    previous = lines[-1]
    return bool(previous.strip()) and not _NOT_SETEXT_TEXT.match(previous)


def _clean_title(title: str) -> str | None:
    """Heading text for a section label: links reduced to their text, no HTML tags."""
    title = _LINK.sub(r"\1", title)
    title = _HTML_TAG.sub(" ", title)
    title = " ".join(title.split())
    if len(title) > _MAX_TITLE:
        title = title[: _MAX_TITLE - 3] + "..."
    return title or None
