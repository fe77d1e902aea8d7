"""PDF documents with pypdf: text per page, encryption, damaged files, scans without text."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import DependencyError
from pypdf.generic import DictionaryObject, IndirectObject

from .assemble import TextAssembler
from .garble import looks_garbled
from .messages import garbled_pages_warning, pages_verb
from .model import Document, error_document
from .pdflog import limited_pypdf_logging
from .pdfrepair import rebuild_xref

NEEDS_PASSWORD = "This PDF is password-protected: enter its password."
WRONG_PASSWORD = (
    "The password is wrong: check it (passwords are case-sensitive) and enter it again."
)
DAMAGED = (
    "The PDF is damaged and could not be read ({detail}): re-save it, or print it to PDF "
    "again, and add the new file."
)
NEEDS_CRYPTOGRAPHY = (
    "This PDF is encrypted with AES, which needs the 'cryptography' package: reinstall "
    "FineTuneFlow (or pip install cryptography) and add the file again."
)
UNSUPPORTED_ENCRYPTION = (
    "This PDF uses an encryption method that cannot be read ({detail}): open it with its "
    "password, print it to a new PDF without a password, and add that file."
)
NO_PAGES = (
    "This PDF has no pages, so there is no text in it: check that it is the right file; if it "
    "is a scan, run it through OCR (e.g. ocrmypdf) and add it again."
)
NO_TEXT = (
    "This PDF has no text layer (it looks scanned): run it through OCR (e.g. ocrmypdf) and "
    "add it again."
)
PAGES_WITHOUT_TEXT = (
    "{pages} no text layer (scanned?): run the file through OCR (e.g. ocrmypdf) and add "
    "it again to use them."
)
PAGES_FAILED = (
    "{pages} not be read ({detail}); the other pages were kept. To get them, re-save "
    "the file or print it to PDF again."
)
REPAIRED = (
    "The PDF was damaged (its cross-reference table is broken) and was read after a repair: "
    "check the chunks, or re-save the file or print it to PDF again."
)
PAGE_TREE_DAMAGED = (
    "The PDF's page list is damaged: {count} page(s) were found by scanning the file, maybe "
    "not all of them and not in order. Re-save it or print it to PDF again for a complete copy."
)


class _Failure(Exception):
    """Reading stopped; carries the message and whether a password would help."""

    def __init__(self, message: str, *, needs_password: bool = False) -> None:
        super().__init__(message)
        self.needs_password = needs_password


@dataclass
class _Pages:
    """Raw text per page (1-based number, text) and what went wrong on the way."""

    texts: list[tuple[int, str]] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    failure_detail: str = ""


def load_pdf(data: bytes, *, password: str | None = None, label: str = "a PDF") -> Document:
    """Load a PDF given as bytes; every problem with the file becomes a message."""
    with limited_pypdf_logging(label):
        try:
            return _read(data, password)
        except _Failure as failure:
            return error_document("pdf", str(failure), needs_password=failure.needs_password)


def _read(data: bytes, password: str | None) -> Document:
    warnings: list[str] = []
    reader, repaired = _open(data)
    if repaired:
        warnings.append(REPAIRED)
    _unlock(reader, password)
    pages, scanned_tree = _page_objects(reader)
    if scanned_tree:
        warnings.append(PAGE_TREE_DAMAGED.format(count=len(pages)))
    extracted = _extract(pages)
    if pages and len(extracted.failed) == len(pages):
        raise _Failure(DAMAGED.format(detail=f"no page could be read: {extracted.failure_detail}"))
    garbled = _garbled_pages(extracted.texts)
    assembler = TextAssembler()
    empty = [
        number
        for number, raw in extracted.texts
        if not assembler.add(raw, page=number) and number not in garbled
    ]
    warnings.extend(_page_warnings(len(pages), extracted, empty))
    if garbled:
        reason = next(iter(garbled.values()))
        warnings.append(garbled_pages_warning(list(garbled), len(pages), reason))
    return assembler.finish("pdf", pages=len(pages), warnings=warnings)


def _open(data: bytes) -> tuple[PdfReader, bool]:
    """A reader for ``data``, and whether the file had to be repaired first."""
    try:
        return PdfReader(io.BytesIO(data), strict=False), False
    except DependencyError as exc:
        raise _Failure(NEEDS_CRYPTOGRAPHY) from exc
    except Exception as first_error:  # pypdf raises many types on damaged files
        repaired = rebuild_xref(data)
        if repaired is None:
            raise _Failure(DAMAGED.format(detail=_describe(first_error))) from first_error
        try:
            return PdfReader(io.BytesIO(repaired), strict=False), True
        except Exception as exc:
            raise _Failure(DAMAGED.format(detail=_describe(first_error))) from exc


def _unlock(reader: PdfReader, password: str | None) -> None:
    """Decrypt with the user's password, else the empty one (which may open it as owner)."""
    if not reader.is_encrypted:
        return
    candidates = [password, ""] if password else [""]
    for candidate in candidates:
        if _decrypt(reader, candidate) != PasswordType.NOT_DECRYPTED:
            return
    message = WRONG_PASSWORD if password else NEEDS_PASSWORD
    raise _Failure(message, needs_password=True)


def _decrypt(reader: PdfReader, password: str) -> PasswordType:
    try:
        return reader.decrypt(password)
    except DependencyError as exc:
        raise _Failure(NEEDS_CRYPTOGRAPHY) from exc
    except NotImplementedError as exc:
        raise _Failure(UNSUPPORTED_ENCRYPTION.format(detail=_describe(exc))) from exc
    except Exception as exc:
        raise _Failure(DAMAGED.format(detail=_describe(exc))) from exc


def _page_objects(reader: PdfReader) -> tuple[list[PageObject], bool]:
    """The pages, from the page tree or, when that is broken, by scanning all objects."""
    try:
        return list(reader.pages), False
    except DependencyError as exc:
        raise _Failure(NEEDS_CRYPTOGRAPHY) from exc
    except Exception as tree_error:
        pages = _scan_for_pages(reader)
        if not pages:
            raise _Failure(DAMAGED.format(detail=_describe(tree_error))) from tree_error
        return pages, True


def _scan_for_pages(reader: PdfReader) -> list[PageObject]:
    pages = []
    for number, generation in _object_ids(reader):
        reference = IndirectObject(number, generation, reader)
        try:
            obj = reader.get_object(reference)
            if isinstance(obj, DictionaryObject) and obj.get("/Type") == "/Page":
                page = PageObject(reader, reference)
                page.update(obj)
                pages.append(page)
        except Exception:  # a damaged object is skipped; the others may still be pages
            continue
    return pages


def _object_ids(reader: PdfReader) -> list[tuple[int, int]]:
    ids = {
        (number, generation) for generation, entries in reader.xref.items() for number in entries
    }
    ids.update((number, 0) for number in reader.xref_objStm)
    return sorted(ids)


def _extract(pages: list[PageObject]) -> _Pages:
    result = _Pages()
    for number, page in enumerate(pages, start=1):
        try:
            result.texts.append((number, page.extract_text()))
        except Exception as exc:  # one bad page must not cost the others
            result.failed.append(number)
            result.failure_detail = result.failure_detail or _describe(exc)
    return result


def _page_warnings(page_count: int, extracted: _Pages, empty: list[int]) -> list[str]:
    warnings = []
    if extracted.failed:
        warnings.append(
            PAGES_FAILED.format(
                pages=pages_verb(extracted.failed, "could", "could"),
                detail=extracted.failure_detail,
            )
        )
    if page_count == 0:
        warnings.append(NO_PAGES)
    elif len(empty) + len(extracted.failed) == page_count:
        warnings.append(NO_TEXT)
    elif empty and (len(empty) >= 3 or 2 * len(empty) >= page_count):
        warnings.append(PAGES_WITHOUT_TEXT.format(pages=pages_verb(empty, "has", "have")))
    return warnings


def _garbled_pages(texts: list[tuple[int, str]]) -> dict[int, str]:
    """Page number -> why its raw text looks like garbage (checked per page: one bad font
    should not hide among many good pages)."""
    reasons = {number: looks_garbled(raw) for number, raw in texts}
    return {number: reason for number, reason in reasons.items() if reason}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
