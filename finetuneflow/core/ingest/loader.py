"""load_document: check the file, find out what it really is, and hand it to its loader."""

from __future__ import annotations

from pathlib import Path

from .detect import (
    HEAD_BYTES,
    OLD_WORD_FILE,
    PROTECTED_OFFICE_FILE,
    Sniffed,
    kind_from_extension,
    sniff,
)
from .model import DEFAULT_LIMITS, Document, IngestLimits, error_document
from .text import load_text

UNREADABLE = (
    "{name} could not be read ({reason}): check that it still exists and that you may open it."
)
NOT_A_FILE = "{name} is not a file: add the documents inside a folder, not the folder itself."
TOO_BIG = (
    "{name} is {size}, more than the {limit} limit for one document: split it into "
    "smaller files, or raise the limit in Settings (maximum document size)."
)
EMPTY = "The file is empty: there is nothing in it to learn from; check that it is the right file."
OLD_DOC = "This is an old Word 97-2003 .doc file: open it in Word or LibreOffice and save as .docx."
PROTECTED_OFFICE = (
    "This is a password-protected Office file: open it in Word, remove the password "
    "(File > Info > Protect Document), save it, and add it again."
)
NOT_TEXT = (
    "{name} is not a text file (it looks like {what}): add the document itself, as PDF, "
    "DOCX, TXT or Markdown."
)
UNSUPPORTED = (
    "{name} has an unsupported file type (it looks like {what}): FineTuneFlow reads PDF, "
    "Word (.docx), plain text and Markdown; save it in one of these formats and add it again."
)
TEXT_NAMED_AS = (
    "{name} is named {suffix} but it is not {expected}: it contains plain text (a web page "
    "saved under the wrong name?). Open it to check, and add the real document."
)
READ_AS = (
    "{name} is named {suffix} but it is {what}: it was read as {what}; rename it to "
    "{extension} to avoid confusion."
)


_FORMAT_NAMES = {"pdf": "a PDF", "docx": "a Word document"}
_EXTENSIONS = {"pdf": ".pdf", "docx": ".docx", "text": ".txt", "markdown": ".md"}
_TEXT_KINDS = frozenset({"text", "markdown"})


def load_document(
    path: Path, *, password: str | None = None, limits: IngestLimits = DEFAULT_LIMITS
) -> Document:
    """Load one document. Never raises for a bad file: problems become status "error" with a
    message saying what happened and what to do. The file is only read, never written."""
    path = Path(path)
    name = path.name
    claimed = kind_from_extension(path.suffix)
    fallback_kind = claimed or "text"
    problem = _check_file(path, limits)
    if problem:
        return error_document(fallback_kind, problem)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return error_document(fallback_kind, UNREADABLE.format(name=name, reason=_reason(exc)))
    if not data:
        return _empty_document(fallback_kind)
    sniffed = sniff(data[:HEAD_BYTES], path.suffix, source=data)
    if sniffed.kind is None:
        return error_document(fallback_kind, _unsupported_message(name, sniffed, claimed))
    if sniffed.kind in _TEXT_KINDS and claimed in _FORMAT_NAMES:
        message = TEXT_NAMED_AS.format(
            name=name, suffix=path.suffix, expected=_FORMAT_NAMES[claimed]
        )
        return error_document(claimed, message)
    document = _load(data, sniffed.kind, password=password, name=name, limits=limits)
    if claimed is not None and _family(claimed) != _family(sniffed.kind):
        note = READ_AS.format(
            name=name, suffix=path.suffix, what=sniffed.what, extension=_EXTENSIONS[sniffed.kind]
        )
        _prepend_warning(document, note)
    return document


def _check_file(path: Path, limits: IngestLimits) -> str | None:
    try:
        if not path.is_file():
            if path.exists():
                return NOT_A_FILE.format(name=path.name)
            return UNREADABLE.format(name=path.name, reason="it does not exist")
        size = path.stat().st_size
    except OSError as exc:
        return UNREADABLE.format(name=path.name, reason=_reason(exc))
    if size > limits.max_bytes:
        limit = _human_size(limits.max_bytes)
        return TOO_BIG.format(name=path.name, size=_human_size(size), limit=limit)
    return None


def _load(data: bytes, kind: str, *, password: str | None, name: str,
          limits: IngestLimits) -> Document:
    if kind == "pdf":
        from .pdf import load_pdf  # pypdf and docx load when a file needs them, not at start

        return load_pdf(data, password=password, label=name)
    if kind == "docx":
        from .word import load_docx

        return load_docx(data, limits)
    return load_text(data, kind=kind, name=name)


def _unsupported_message(name: str, sniffed: Sniffed, claimed: str | None) -> str:
    if sniffed.what == OLD_WORD_FILE:
        return OLD_DOC
    if sniffed.what == PROTECTED_OFFICE_FILE:
        return PROTECTED_OFFICE
    if claimed in _TEXT_KINDS:
        return NOT_TEXT.format(name=name, what=sniffed.what)
    return UNSUPPORTED.format(name=name, what=sniffed.what)


def _family(kind: str) -> str:
    return "text" if kind in _TEXT_KINDS else kind


def _prepend_warning(document: Document, warning: str) -> None:
    """Put ``warning`` first; an error keeps its status, with the warning before its message."""
    document.warnings.insert(0, warning)
    if document.status == "ok":
        document.status = "warning"
    document.message = f"{warning} {document.message}".strip()


def _empty_document(kind: str) -> Document:
    return Document(
        kind=kind,
        status="warning",
        message=EMPTY,
        text="",
        segments=[],
        boundaries=[],
        pages=None,
        warnings=[EMPTY],
    )


def _human_size(size: int) -> str:
    megabytes = size / (1024 * 1024)
    if megabytes >= 10:
        return f"{megabytes:.0f} MB"
    if megabytes >= 1:
        return f"{megabytes:.1f} MB"
    return f"{max(1, round(size / 1024))} KB"


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()
