"""PDFs written at test time (raw bytes or pypdf's writer): pages, passwords, damage, scans."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.errors import DependencyError

from finetuneflow.core.ingest import Document, detect_kind, load_document
from finetuneflow.core.ingest.pdflog import PYPDF_LOGGER, limited_pypdf_logging

CHINESE = "这是一个用于测试的中文句子，我们希望它被正确地识别出来。今天天气很好。"


def pdf_bytes(pages: list[str | bytes], *, contents: dict[int, bytes] | None = None) -> bytes:
    """A classic PDF: one Helvetica (WinAnsi) text line per line of each page's text.

    ``contents`` replaces the content stream object of some pages (0-based) verbatim.
    """
    objects: list[bytes] = [
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"",
    ]
    pages_id, kids = 2, []
    for index, text in enumerate(pages):
        raw = text.encode("cp1252") if isinstance(text, str) else text
        if contents and index in contents:
            objects.append(contents[index])
        else:
            objects.append(_stream(_text_operators(raw)))
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 1 0 R >> >> >>" % content_id
        )
        kids.append(len(objects))
    references = b" ".join(b"%d 0 R" % kid for kid in kids)
    objects[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (references, len(kids))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    return _serialise(objects, root=len(objects))


def _text_operators(raw: bytes) -> bytes:
    lines = [b"BT /F1 12 Tf 72 720 Td 14 TL"]
    for line in raw.split(b"\n"):
        escaped = line.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
        lines.append(b"(" + escaped + b") Tj T*")
    lines.append(b"ET")
    return b"\n".join(lines)


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _serialise(objects: list[bytes], *, root: int) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\n" % (len(objects) + 1, root)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def written(pdf: bytes, **encrypt: str) -> bytes:
    """The PDF re-written by pypdf, encrypted when ``encrypt`` gives passwords."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    if encrypt:
        writer.encrypt(**encrypt)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def load(tmp_path: Path, data: bytes, name: str = "doc.pdf", **kwargs: str) -> Document:
    path = tmp_path / name
    path.write_bytes(data)
    return load_document(path, **kwargs)


THREE_PAGES = [
    "First page: Größe and café.\nA word broken by exam-\nple hyphenation.",
    "Second page about rivers.",
    "Third page, the end.",
]


def test_text_per_page(tmp_path: Path) -> None:
    document = load(tmp_path, pdf_bytes(THREE_PAGES))
    assert document.kind == "pdf" and document.status == "ok", document.message
    assert document.pages == 3
    assert [segment.page for segment in document.segments] == [1, 2, 3]
    pieces = [document.text[s.start : s.end] for s in document.segments]
    assert "\n\n".join(pieces) == document.text
    assert pieces[0].startswith("First page: Größe and café.")
    assert "example hyphenation" in pieces[0]
    assert pieces[1] == "Second page about rivers."
    assert [s.start for s in document.segments] == [b for b in document.boundaries]


def test_pages_without_text_look_scanned(tmp_path: Path) -> None:
    writer = PdfWriter()
    for _ in range(2):
        writer.add_blank_page(width=612, height=792)
    buffer = io.BytesIO()
    writer.write(buffer)
    document = load(tmp_path, buffer.getvalue())
    assert document.status == "warning" and document.pages == 2
    assert "no text layer (it looks scanned)" in document.message
    assert "run it through OCR (e.g. ocrmypdf) and add it again" in document.message


def test_some_pages_without_text(tmp_path: Path) -> None:
    document = load(tmp_path, pdf_bytes(["Real text here.", "", "", "", "More text."]))
    assert document.status == "warning"
    assert document.message.startswith("Pages 2-4 have no text layer (scanned?)")
    assert [s.page for s in document.segments] == [1, 5]


def test_zero_pages(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    PdfWriter().write(buffer)
    document = load(tmp_path, buffer.getvalue())
    assert document.status == "warning" and document.pages == 0
    assert "no pages" in document.message and "OCR" in document.message


@pytest.mark.parametrize("algorithm", ["AES-256", "AES-128", "RC4-128"])
def test_user_password(tmp_path: Path, algorithm: str) -> None:
    data = written(
        pdf_bytes(THREE_PAGES), user_password="s3cret", owner_password="owner", algorithm=algorithm
    )
    locked = load(tmp_path, data)
    assert locked.status == "error" and locked.needs_password
    assert locked.message == "This PDF is password-protected: enter its password."
    assert locked.text == ""
    wrong = load(tmp_path, data, password="guess")
    assert wrong.status == "error" and wrong.needs_password
    assert wrong.message.startswith("The password is wrong")
    opened = load(tmp_path, data, password="s3cret")
    assert opened.status == "ok" and not opened.needs_password
    assert "Second page about rivers." in opened.text
    assert load(tmp_path, data, password="owner").status == "ok"  # the owner password opens too


def test_empty_user_password_opens_without_asking(tmp_path: Path) -> None:
    data = written(
        pdf_bytes(THREE_PAGES), user_password="", owner_password="owner", algorithm="AES-256"
    )
    document = load(tmp_path, data)
    assert document.status == "ok" and "Third page" in document.text
    # A password typed for a file that needs none does not lock it.
    assert load(tmp_path, data, password="anything").status == "ok"


def test_missing_cryptography_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = written(
        pdf_bytes(THREE_PAGES), user_password="", owner_password="o", algorithm="AES-256"
    )

    def no_crypto(self: PdfReader, password: str) -> None:
        raise DependencyError("cryptography>=3.1 is required for AES algorithm")

    monkeypatch.setattr(PdfReader, "decrypt", no_crypto)
    document = load(tmp_path, data)
    assert document.status == "error" and "'cryptography' package" in document.message


def test_garbage_is_a_clear_error(tmp_path: Path) -> None:
    document = load(tmp_path, b"%PDF-1.4\n" + bytes(range(256)) * 4)
    assert document.status == "error"
    assert document.message.startswith("The PDF is damaged")
    assert "re-save it, or print it to PDF again" in document.message


def test_truncated_pdf_is_a_clear_error(tmp_path: Path) -> None:
    data = pdf_bytes(THREE_PAGES)
    document = load(tmp_path, data[: len(data) // 2])
    assert document.status == "error" and document.message.startswith("The PDF is damaged")


def test_broken_xref_is_repaired(tmp_path: Path) -> None:
    data = pdf_bytes(THREE_PAGES)
    start = data.index(b"xref\n")
    broken = data[:start] + data[start:].replace(b" 00000 n", b" 00000 x junk")
    document = load(tmp_path, broken)
    assert document.status == "warning", document.message
    assert "read after a repair" in document.message
    assert "Second page about rivers." in document.text


def test_a_page_that_fails_is_a_warning_and_the_others_are_kept(tmp_path: Path) -> None:
    unreadable = b"<< /Length 10 /Filter /NoSuchFilter >>\nstream\n0123456789\nendstream"
    document = load(tmp_path, pdf_bytes(THREE_PAGES, contents={1: unreadable}))
    assert document.status == "warning"
    assert document.message.startswith("Page 2 could not be read")
    assert "the other pages were kept" in document.message
    assert [s.page for s in document.segments] == [1, 3]


def test_all_pages_failing_is_an_error(tmp_path: Path) -> None:
    unreadable = b"<< /Length 10 /Filter /NoSuchFilter >>\nstream\n0123456789\nendstream"
    document = load(tmp_path, pdf_bytes(["a", "b"], contents={0: unreadable, 1: unreadable}))
    assert document.status == "error" and "no page could be read" in document.message


def test_garbled_font_is_a_warning(tmp_path: Path) -> None:
    # UTF-8 bytes shown through a WinAnsi font: what a font without a Unicode map gives.
    garbled = CHINESE.encode("utf-8")
    document = load(tmp_path, pdf_bytes([THREE_PAGES[0], garbled]))
    assert document.status == "warning"
    assert document.message.startswith("Page 2 looks garbled")
    assert "check the chunks, or use an OCR'd copy" in document.message
    only = load(tmp_path, pdf_bytes([garbled]))
    assert only.message.startswith(
        "The text looks garbled (font without a Unicode map?): check the chunks, "
        "or use an OCR'd copy."
    )


def test_pdf_named_txt_is_read_as_pdf_with_a_warning(tmp_path: Path) -> None:
    document = load(tmp_path, pdf_bytes(THREE_PAGES), name="notes.txt")
    assert document.kind == "pdf" and document.status == "warning"
    assert document.message.startswith("notes.txt is named .txt but it is a PDF")
    assert "Third page" in document.text
    assert detect_kind(tmp_path / "notes.txt") == "pdf"


def test_junk_before_the_header_is_tolerated(tmp_path: Path) -> None:
    document = load(tmp_path, b"\r\n\x00junk\r\n" + pdf_bytes(THREE_PAGES))
    assert document.kind == "pdf" and "rivers" in document.text


def test_pypdf_logging_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    noisy = logging.getLogger(f"{PYPDF_LOGGER}._reader")
    with caplog.at_level(logging.INFO), limited_pypdf_logging("test.pdf"):
        for number in range(500):
            noisy.warning("Object %d 0 not defined.", number)
        noisy.warning("A different message")
    passed = [r for r in caplog.records if r.name == noisy.name]
    assert [r.getMessage() for r in passed] == [
        "Object 0 0 not defined.",
        "Object 1 0 not defined.",
        "Object 2 0 not defined.",
        "A different message",
    ]
    summary = [r.getMessage() for r in caplog.records if "repeated itself" in r.getMessage()]
    assert summary == [
        "pypdf repeated itself while reading test.pdf: 497 more records of 1 kinds not shown"
    ]


def test_the_original_file_is_not_modified(tmp_path: Path) -> None:
    data = pdf_bytes(THREE_PAGES)
    path = tmp_path / "keep.pdf"
    path.write_bytes(data)
    load_document(path)
    assert path.read_bytes() == data
