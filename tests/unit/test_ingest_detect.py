"""detect_kind: the type comes from the content (magic bytes), not from the file name."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import docx
import pytest

from finetuneflow.core.ingest import SUPPORTED_EXTENSIONS, detect_kind, load_document

MINIMAL_PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< >>\n%%EOF\n"


def zip_bytes(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return buffer.getvalue()


def docx_bytes() -> bytes:
    buffer = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("Hello")
    document.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("a.pdf", MINIMAL_PDF, "pdf"),
        ("a.docx", MINIMAL_PDF, "pdf"),  # the name does not matter
        ("a.pdf", b"\xef\xbb\xbfjunk line\n" + MINIMAL_PDF, "pdf"),  # junk before the header
        ("a.docx", docx_bytes(), "docx"),
        ("a.zip", docx_bytes(), "docx"),
        ("a.docx", docx_bytes()[:3000], "docx"),  # truncated: the loader explains
        ("a.docx", zip_bytes(["xl/workbook.xml"]), None),
        ("a.zip", zip_bytes(["readme.txt"]), None),
        ("a.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), None),  # Word 97-2003
        ("a.txt", b"\xff\xd8\xff\xe0\x00\x10JFIF", None),
        ("a.txt", b"\x89PNG\r\n\x1a\n\x00\x00", None),
        ("a.txt", b"{\\rtf1\\ansi Hello}", None),
        ("a.txt", bytes(range(256)), None),
        ("a.txt", b"plain text\n", "text"),
        ("a.log", b"plain text\n", "text"),
        ("noext", b"plain text\n", "text"),
        ("a.md", b"# Title\n", "markdown"),
        ("a.markdown", b"# Title\n", "markdown"),
        ("a.MD", b"# Title\n", "markdown"),
        ("a.txt", "UTF-16 without a BOM, ASCII only".encode("utf-16-le"), "text"),
        ("a.txt", "\ufeffUTF-16 with a BOM".encode("utf-16-be"), "text"),
        ("a.txt", "Größe café".encode("cp1252"), "text"),
        ("a.txt", b"", "text"),
    ],
)
def test_detect_kind(tmp_path: Path, name: str, data: bytes, kind: str | None) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert detect_kind(path) == kind


def test_supported_extensions() -> None:
    assert SUPPORTED_EXTENSIONS == frozenset({".pdf", ".docx", ".txt", ".md", ".markdown"})


def test_unknown_binary_is_an_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(random.Random(7).randbytes(4096))
    document = load_document(path)
    assert document.status == "error"
    assert "unsupported file type" in document.message
    assert "PDF, Word (.docx), plain text and Markdown" in document.message


def test_other_zip_named_docx_names_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "slides.docx"
    path.write_bytes(zip_bytes(["ppt/presentation.xml"]))
    document = load_document(path)
    assert document.status == "error" and "PowerPoint presentation" in document.message
