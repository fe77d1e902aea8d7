"""Zip-based documents that would unpack beyond the limits are refused before they are
unpacked: a zip bomb (a small .docx whose XML inflates a thousandfold) costs no memory."""

from __future__ import annotations

import io
import resource
import zipfile
from pathlib import Path

import docx

from finetuneflow.core.ingest import load_document
from finetuneflow.core.ingest.model import IngestLimits

NAMESPACE = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
PARAGRAPH = b"<w:p><w:r><w:t>All work and no play. </w:t></w:r></w:p>"


def _plain_docx() -> bytes:
    document = docx.Document()
    document.add_paragraph("The pump is checked every week. " * 20)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _bomb(path: Path, repeats: int) -> Path:
    """The issue's zip bomb, scaled: every part of a real .docx but document.xml, which is the
    same paragraph `repeats` times (it packs about 700 times smaller)."""
    source = zipfile.ZipFile(io.BytesIO(_plain_docx()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
        for name in source.namelist():
            if name != "word/document.xml":
                bomb.writestr(name, source.read(name))
        with bomb.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(b"<w:document " + NAMESPACE + b"><w:body>")
            for _ in range(repeats // 1000):
                part.write(PARAGRAPH * 1000)
            part.write(b"</w:body></w:document>")
    return path


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.docx", repeats=200_000)  # 10 MB of XML in ~20 KB
    assert bomb.stat().st_size < 200_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    document = load_document(bomb, limits=IngestLimits(max_part_bytes=4 * 1024 * 1024))
    assert document.status == "error" and document.text == ""
    assert document.message.startswith("This document was not read: unpacked, "
                                       "word/document.xml would take 10 MB (the limit is 4 MB "
                                       "per part).")
    # The parser never ran: peak memory grew by far less than the XML's size.
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 8 * 1024


def test_a_part_packed_far_tighter_than_documents_are_is_refused(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.docx", repeats=200_000)
    document = load_document(bomb, limits=IngestLimits(ratio_from_bytes=1024 * 1024))
    assert document.status == "error"
    assert "word/document.xml is packed" in document.message
    assert "a zip bomb looks like this" in document.message


def test_all_parts_together_have_a_limit(tmp_path: Path) -> None:
    path = tmp_path / "plain.docx"
    path.write_bytes(_plain_docx())
    document = load_document(path, limits=IngestLimits(max_unpacked_bytes=10_000))
    assert document.status == "error" and "all its parts" in document.message


def test_a_real_document_is_within_the_default_limits(tmp_path: Path) -> None:
    path = tmp_path / "plain.docx"
    path.write_bytes(_plain_docx())
    document = load_document(path)
    assert document.status == "ok" and "pump is checked" in document.text
