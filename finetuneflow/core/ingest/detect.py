"""What a file really is, from its first bytes rather than its name."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .encoding import wide_unicode_without_bom

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset({".pdf", ".docx", ".txt", ".md", ".markdown"})
MARKDOWN_EXTENSIONS: frozenset[str] = frozenset({".md", ".markdown"})

HEAD_BYTES = 64 * 1024
OLD_WORD_FILE = "an old Word 97-2003 .doc file"
PROTECTED_OFFICE_FILE = "a password-protected Office file"
_PDF_HEADER_WINDOW = 1024  # the PDF spec tolerates junk before "%PDF-"
_MAX_CONTROL_SHARE = 0.05

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
# Bytes below 0x20 that plain text does contain: tab, LF, VT, FF, CR, ESC.
_TEXT_CONTROLS = frozenset(b"\t\n\x0b\x0c\r\x1b")

# Leading signatures of common binary formats, to name them in the message.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG image data"),
    (b"\x89PNG\r\n\x1a\n", "PNG image data"),
    (b"GIF87a", "GIF image data"),
    (b"GIF89a", "GIF image data"),
    (b"II*\x00", "TIFF image data"),
    (b"MM\x00*", "TIFF image data"),
    (b"RIFF", "audio, video or WebP image data"),
    (b"OggS", "Ogg audio or video data"),
    (b"fLaC", "FLAC audio data"),
    (b"ID3\x02", "MP3 audio data"),
    (b"ID3\x03", "MP3 audio data"),
    (b"ID3\x04", "MP3 audio data"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"\xca\xfe\xba\xbe", "a Java class or macOS program"),
    (b"\xcf\xfa\xed\xfe", "a macOS program"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"wOFF", "a web font"),
    (b"wOF2", "a web font"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript document"),
)


@dataclass(frozen=True)
class Sniffed:
    """What the content is: a supported kind (or None) and a phrase naming it for messages."""

    kind: str | None
    what: str


def detect_kind(path: Path) -> str | None:
    """The kind of ``path`` judged by its content: "pdf", "docx", "text", "markdown" or None.

    Text is told apart from Markdown by the extension only, since both are plain text.
    Raises OSError when the file cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    return sniff(head, path.suffix, source=path).kind


def kind_from_extension(suffix: str) -> str | None:
    suffix = suffix.lower()
    if suffix == ".pdf":
        return "pdf"
    if suffix == ".docx":
        return "docx"
    if suffix in MARKDOWN_EXTENSIONS:
        return "markdown"
    if suffix == ".txt":
        return "text"
    return None


def sniff(head: bytes, suffix: str, *, source: Path | bytes) -> Sniffed:
    """Classify a file from its first bytes (``head``).

    ``source`` (the path or the whole content) is read further only for containers: a ZIP is
    opened to see whether it is a Word document, an OLE2 file to see which Office file it is.
    """
    if b"%PDF-" in head[:_PDF_HEADER_WINDOW]:
        return Sniffed("pdf", "a PDF")
    if head.startswith(_ZIP):
        return _sniff_zip(head, source)
    if head.startswith(_OLE2):
        return Sniffed(None, _describe_ole2(source))
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return Sniffed(None, what)
    if _looks_like_text(head):
        kind = "markdown" if suffix.lower() in MARKDOWN_EXTENSIONS else "text"
        return Sniffed(kind, "plain text")
    return Sniffed(None, "binary data")


def _looks_like_text(head: bytes) -> bool:
    if not head or head.startswith(_BOMS) or wide_unicode_without_bom(head):
        return True
    if 0 in head:
        return False
    controls = sum(1 for byte in head if byte < 0x20 and byte not in _TEXT_CONTROLS)
    return controls / len(head) <= _MAX_CONTROL_SHARE


def _sniff_zip(head: bytes, source: Path | bytes) -> Sniffed:
    names = _zip_names(source)
    if names is None:
        # Unreadable (e.g. truncated): the local headers at the front still name the parts.
        if b"word/" in head:
            return Sniffed("docx", "a damaged Word document")
        return Sniffed(None, "a damaged ZIP archive")
    if "word/document.xml" in names or any(name.startswith("word/") for name in names):
        return Sniffed("docx", "a Word document")
    return Sniffed(None, _describe_zip(names))


def _zip_names(source: Path | bytes) -> set[str] | None:
    try:
        stream = source if isinstance(source, Path) else io.BytesIO(source)
        with zipfile.ZipFile(stream) as archive:
            return set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None


def _describe_zip(names: set[str]) -> str:
    if any(name.startswith("xl/") for name in names):
        return "an Excel workbook (.xlsx)"
    if any(name.startswith("ppt/") for name in names):
        return "a PowerPoint presentation (.pptx)"
    if "content.xml" in names and "mimetype" in names:
        return "an OpenDocument file (.odt/.ods/.odp)"
    if "META-INF/container.xml" in names:
        return "an EPUB e-book"
    return "a ZIP archive"


def _describe_ole2(source: Path | bytes) -> str:
    data = source.read_bytes() if isinstance(source, Path) else source
    # Stream names are stored in UTF-16-LE in the compound file's directory.
    if "EncryptedPackage".encode("utf-16-le") in data:
        return PROTECTED_OFFICE_FILE
    if "WordDocument".encode("utf-16-le") in data:
        return OLD_WORD_FILE
    return "an old Office 97-2003 file (.xls, .ppt or .msg)"
