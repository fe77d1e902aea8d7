"""Word (.docx) documents: body in reading order, tables, headers/footers, foot- and endnotes.

python-docx opens the package (ZIP + relationships); the XML is then walked directly, by local
element names, because its paragraph API skips tables and text inside tracked insertions, has
no footnotes, and does not know the namespaces of Strict Open XML files (same element names,
other namespaces), which this walk reads as well.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from docx.opc.part import Part
from docx.oxml import parse_xml
from docx.package import Package
from lxml import etree

from .assemble import TextAssembler
from .garble import looks_garbled
from .messages import garbled_warning
from .model import DEFAULT_LIMITS, Document, IngestLimits, error_document
from .ooxml import (
    BLOCK_CONTAINERS,
    Element,
    attribute,
    child_value,
    collect_runs,
    first_branch,
    first_child,
    local_name,
    outline_level,
    table_cells,
    table_rows,
)

_MIN_VISIBLE_CHARS = 20
_MAX_TITLE = 120

DAMAGED = (
    "This Word document is damaged or incomplete ({detail}): open it in Word or LibreOffice "
    "and save it again, or get a fresh copy, then add it again."
)
NOT_WORD = (
    "This file is a ZIP archive but not a Word document: save it from Word or LibreOffice as a "
    "Word Document (.docx) and add it again."
)
STRICT_UNREADABLE = (
    "This document was saved as Strict Open XML and could not be read: re-save it as a Word "
    "Document (.docx) and add it again."
)
NO_TEXT = (
    "This document has no text: if its content is in images (a scan, for example), save it as "
    "PDF, run it through OCR (e.g. ocrmypdf) and add it again."
)
PART_DAMAGED = (
    "The {parts} could not be read and were left out; the rest of the document was kept. {problem}"
)
LITTLE_TEXT = (
    "This document has very little text ({count} characters): if its content is in images, "
    "save it as PDF, run it through OCR (e.g. ocrmypdf) and add it again."
)

TOO_BIG_UNPACKED = (
    "This document was not read: unpacked, {part} would take {size} (the limit is {limit}). "
    "If it is a real document, split it into smaller files, or raise the limit in Settings "
    "(finetuneflow settings --max-part-mb / --max-unpacked-mb)."
)
PACKED_TOO_TIGHT = (
    "This document was not read: its part {part} is packed {ratio:.0f} times smaller than its "
    "{size} unpacked, which real documents never are (a zip bomb looks like this). If you "
    "trust it, open it in Word, save it again and add the new file."
)

_STRICT_NAMESPACE = b"http://purl.oclc.org/ooxml/"
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    KeyError,
    OSError,
    ValueError,
    EOFError,
    NotImplementedError,
)
_SEPARATOR_NOTES = frozenset({"separator", "continuationSeparator", "continuationNotice"})
_HEADING_NAME = re.compile(r"heading\s*(\d)", re.IGNORECASE)


class _Unreadable(Exception):
    """The package cannot be read; carries the message for the user."""


@dataclass(frozen=True)
class _Block:
    text: str
    heading_level: int | None = None


@dataclass(frozen=True)
class _Style:
    name: str
    outline_level: int | None
    based_on: str | None


def load_docx(data: bytes, limits: IngestLimits = DEFAULT_LIMITS) -> Document:
    """Load a .docx given as bytes; a damaged or foreign file becomes an error document, and
    one that would unpack beyond the limits is refused before anything is unpacked."""
    if problem := unpacked_size_problem(data, limits):
        return error_document("docx", problem)
    strict = _is_strict(data)
    try:
        main = _main_part(data)
        reader = _WordReader(main)
        return reader.read()
    except _Unreadable as problem:
        return error_document("docx", STRICT_UNREADABLE if strict else str(problem))


def unpacked_size_problem(data: bytes, limits: IngestLimits) -> str | None:
    """Why unpacking this zip would cost too much memory, from the sizes its directory
    declares (Python's zipfile never yields more than a member's declared size); None if not."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except _ZIP_ERRORS:
        return None  # not readable as a ZIP: _main_part reports it
    total = 0
    for member in members:
        total += member.file_size
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > limits.max_part_bytes:
            return TOO_BIG_UNPACKED.format(part=member.filename,
                                           size=_size(member.file_size),
                                           limit=f"{_size(limits.max_part_bytes)} per part")
        if member.file_size > limits.ratio_from_bytes and ratio > limits.max_ratio:
            return PACKED_TOO_TIGHT.format(part=member.filename, ratio=ratio,
                                           size=_size(member.file_size))
    if total > limits.max_unpacked_bytes:
        return TOO_BIG_UNPACKED.format(part="all its parts", size=_size(total),
                                       limit=f"{_size(limits.max_unpacked_bytes)} in all")
    return None


def _size(size: int) -> str:
    return f"{size / 1024**3:.1f} GB" if size >= 1024**3 else f"{size / 1024**2:.0f} MB"


def _is_strict(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return _STRICT_NAMESPACE in archive.read("_rels/.rels")
    except _ZIP_ERRORS:
        return False  # not readable as a ZIP: _main_part reports it


def _main_part(data: bytes) -> Part:
    try:
        package = Package.open(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise _Unreadable(DAMAGED.format(detail=f"not a complete ZIP archive: {exc}")) from exc
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors…
        raise _Unreadable(DAMAGED.format(detail=_describe(exc))) from exc
    main = _related(package.rels.values(), "officeDocument")
    if main is None:
        raise _Unreadable(NOT_WORD)
    return main


def _describe(exc: Exception) -> str:
    text = str(exc).strip().strip("\"'") or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _related(rels: Iterable[Any], kind: str) -> Part | None:
    """The first part related by a relationship type ending in ``kind`` (either namespace)."""
    for rel in rels:
        if not rel.is_external and rel.reltype.rsplit("/", 1)[-1] == kind:
            part: Part = rel.target_part
            return part
    return None


def _xml(part: Part) -> Element:
    element: Element | None = getattr(part, "element", None)
    if element is not None:
        return element
    try:
        return parse_xml(part.blob)
    except etree.XMLSyntaxError as exc:
        raise _Unreadable(DAMAGED.format(detail=f"{part.partname}: {_describe(exc)}")) from exc


class _WordReader:
    """Reads one main document part and the parts it refers to."""

    def __init__(self, main: Part) -> None:
        self._main = main
        self._root = _xml(main)
        self._styles = self._read_styles()

    def read(self) -> Document:
        body = first_child(self._root, "body")
        if body is None:
            raise _Unreadable(DAMAGED.format(detail="the document body is missing"))
        assembler = TextAssembler()
        raw: list[str] = []
        self._add_body(assembler, raw, body)
        problems: list[str] = []
        for section, texts in self._extra_parts(problems):
            raw.extend(texts)
            assembler.add("\n\n".join(texts), section=section)
        warnings = problems + self._warnings(assembler, raw)
        return assembler.finish("docx", pages=None, warnings=warnings)

    def _add_body(self, assembler: TextAssembler, raw: list[str], body: Element) -> None:
        section: str | None = None
        pending: list[str] = []
        for block in self._blocks(body):
            raw.append(block.text)
            if block.heading_level is not None and block.text.strip():
                assembler.add("\n\n".join(pending), section=section)
                section, pending = _section_title(block.text), []
            pending.append(block.text)
        assembler.add("\n\n".join(pending), section=section)

    def _warnings(self, assembler: TextAssembler, raw: list[str]) -> list[str]:
        warnings: list[str] = []
        visible = assembler.visible_chars()
        if visible == 0:
            warnings.append(NO_TEXT)
        elif visible < _MIN_VISIBLE_CHARS:
            warnings.append(LITTLE_TEXT.format(count=visible))
        reason = looks_garbled("\n".join(raw))
        if reason:
            warnings.append(garbled_warning(reason))
        return warnings

    # Headers, footers and notes -------------------------------------------------------------

    def _extra_parts(self, problems: list[str]) -> Iterator[tuple[str, list[str]]]:
        """(section label, texts) for headers, footers, footnotes and endnotes.

        A damaged one is reported in ``problems`` and skipped; the body is kept.
        """
        readers: list[tuple[str, str, Callable[[], list[str]]]] = [
            ("Header", "headers", lambda: self._unique_texts(self._header_footer_roots("header"))),
            ("Footer", "footers", lambda: self._unique_texts(self._header_footer_roots("footer"))),
            ("Footnotes", "footnotes", lambda: self._notes("footnotes", "footnote")),
            ("Endnotes", "endnotes", lambda: self._notes("endnotes", "endnote")),
        ]
        for section, parts, read in readers:
            try:
                texts = read()
            except _Unreadable as problem:
                problems.append(PART_DAMAGED.format(parts=parts, problem=problem))
                continue
            if texts:
                yield section, texts

    def _header_footer_roots(self, kind: str) -> Iterator[Element]:
        """Each header (or footer) part once, in section order, as the sections refer to them."""
        seen: set[str] = set()
        for properties in self._root.iter("{*}sectPr"):
            for reference in properties:
                if local_name(reference) != f"{kind}Reference":
                    continue
                rel_id = attribute(reference, "id")
                rel = self._main.rels.get(rel_id) if rel_id else None
                if rel is None or rel.is_external or rel.target_part.partname in seen:
                    continue
                seen.add(rel.target_part.partname)
                yield _xml(rel.target_part)

    def _unique_texts(self, roots: Iterable[Element]) -> list[str]:
        texts: list[str] = []
        for root in roots:
            text = "\n\n".join(block.text for block in self._blocks(root) if block.text.strip())
            if text.strip() and text not in texts:
                texts.append(text)
        return texts

    def _notes(self, kind: str, note_name: str) -> list[str]:
        part = _related(self._main.rels.values(), kind)
        if part is None:
            return []
        texts = []
        for note in _xml(part):
            if local_name(note) != note_name or attribute(note, "type") in _SEPARATOR_NOTES:
                continue
            text = "\n".join(block.text for block in self._blocks(note) if block.text.strip())
            if text.strip():
                texts.append(text)
        return texts

    # Blocks: paragraphs and tables in reading order ----------------------------------------

    def _blocks(self, container: Element) -> Iterator[_Block]:
        for child in container:
            name = local_name(child)
            if name == "p":
                yield from self._paragraph(child)
            elif name == "tbl":
                yield _Block(self._table(child))
            elif name in BLOCK_CONTAINERS:
                yield from self._blocks(child)
            elif name == "AlternateContent":
                branch = first_branch(child)
                if branch is not None:
                    yield from self._blocks(branch)

    def _paragraph(self, paragraph: Element) -> Iterator[_Block]:
        parts: list[str] = []
        text_boxes: list[Element] = []
        collect_runs(paragraph, parts, text_boxes)
        yield _Block("".join(parts), self._heading_level(paragraph))
        for box in text_boxes:
            yield from self._blocks(box)

    def _table(self, table: Element) -> str:
        """One line per row, cells separated by " | "; a one-cell row keeps its paragraphs."""
        lines = []
        for row in table_rows(table):
            cells = [text for text in map(self._cell, table_cells(row)) if text.strip()]
            if len(cells) == 1:
                lines.append(cells[0])
            elif cells:
                lines.append(" | ".join(" ".join(cell.split()) for cell in cells))
        return "\n".join(lines)

    def _cell(self, cell: Element) -> str:
        return "\n".join(block.text for block in self._blocks(cell) if block.text.strip())

    # Styles ---------------------------------------------------------------------------------

    def _read_styles(self) -> dict[str, _Style]:
        part = _related(self._main.rels.values(), "styles")
        try:
            root = _xml(part) if part is not None else None
        except _Unreadable:
            root = None  # without styles only outline levels mark headings; the text is intact
        if root is None:
            return {}
        styles = {}
        for style in root:
            if local_name(style) != "style" or attribute(style, "type") != "paragraph":
                continue
            style_id = attribute(style, "styleId")
            if style_id:
                styles[style_id] = _Style(
                    name=child_value(style, "name") or "",
                    outline_level=outline_level(first_child(style, "pPr")),
                    based_on=child_value(style, "basedOn"),
                )
        return styles

    def _heading_level(self, paragraph: Element) -> int | None:
        properties = first_child(paragraph, "pPr")
        if properties is None:
            return None
        own = outline_level(properties)
        if own is not None:
            return own
        return self._style_heading_level(child_value(properties, "pStyle"))

    def _style_heading_level(self, style_id: str | None) -> int | None:
        for _ in range(10):  # basedOn chains are short; a cycle must not hang us
            style = self._styles.get(style_id or "")
            if style is None:
                return None
            name = style.name.strip().lower()
            if name == "title":
                return 0
            match = _HEADING_NAME.fullmatch(name)
            if match:
                return int(match.group(1))
            if style.outline_level is not None:
                return style.outline_level
            style_id = style.based_on
        return None


def _section_title(heading: str) -> str:
    title = " ".join(heading.split())
    return title if len(title) <= _MAX_TITLE else title[: _MAX_TITLE - 3] + "..."
