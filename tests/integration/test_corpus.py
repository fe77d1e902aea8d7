"""Every real-world file of the shared corpus behaves as its MANIFEST.tsv row says.

One case per manifest row. Each row's expected_behaviour is turned into an expectation below;
the words to find come from the manifest's "starts:" column where it has one.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from finetuneflow.core.ingest import Document, load_document, normalise_text

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.tsv"

pytestmark = pytest.mark.skipif(not MANIFEST.is_file(), reason=f"no corpus at {CORPUS}")

SCANNED = "no text layer (it looks scanned): run it through OCR (e.g. ocrmypdf) and add it again"
NEEDS_PASSWORD = "This PDF is password-protected: enter its password."
REPAIRED = "read after a repair"


@dataclass(frozen=True)
class Expect:
    status: str = "ok"
    words: tuple[str, ...] = ()  # must appear (whitespace-insensitive)
    absent: tuple[str, ...] = ()  # must not appear
    message: str = ""  # must appear in the message
    pages: int | None = None
    sections: tuple[str, ...] = ()  # section labels that must exist
    once: tuple[str, ...] = ()  # must appear exactly once


EXPECTATIONS: dict[str, Expect] = {
    # PDF
    "pdf/normal_pdflatex_4pages.pdf": Expect(pages=4),
    "pdf/normal_google-docs-export_1page.pdf": Expect(pages=1),
    "pdf/long_geotopo_german_117pages.pdf": Expect(
        pages=117, words=("Einführung in die Geometrie und Topologie", "Topologische Räume")
    ),
    "pdf/multicolumn_latex_3pages.pdf": Expect(pages=3, words=("Lorem ipsum",)),
    "pdf/unicode_multilang_1page.pdf": Expect(
        words=("مرحبا بالعالم", "Привет, мир", "你好世界", "こんにちは世界", "สวัสดีชาวโลก")
    ),
    "pdf/unicode_arabic_habibi.pdf": Expect(words=("habibi",)),
    "pdf/unicode_french_form-160F.pdf": Expect(words=("modèle 160 année", "salarié(e)")),
    "pdf/encrypted_userpw_rc4-128_libreoffice.pdf": Expect(status="error", message=NEEDS_PASSWORD),
    "pdf/encrypted_userpw_aes-256.pdf": Expect(status="error", message=NEEDS_PASSWORD),
    "pdf/encrypted_no-userpw_v4-rc4-128.pdf": Expect(words=("pdf encryption test",)),
    "pdf/encrypted_aes-256_empty-owner-pw.pdf": Expect(words=("pdf encryption test",)),
    "pdf/scanned_xerox-jbig2_no-text.pdf": Expect(status="warning", message=SCANNED, pages=1),
    "pdf/scanned_with-ocr-layer_vicksburg_6pages.pdf": Expect(pages=6, words=("Grant",)),
    "pdf/corrupt_stream_zen-of-python.pdf": Expect(words=("Now is better than never.",)),
    # Manifest: "clear error"; the xref repair recovers its text, with a warning.
    "pdf/corrupt_no-startxref.pdf": Expect(
        status="warning", message=REPAIRED, words=("Hello world",)
    ),
    "pdf/malformed_xref_garbage-entries.pdf": Expect(
        status="warning", message=REPAIRED, words=("Potato",)
    ),
    "pdf/zero-pages.pdf": Expect(status="warning", message="This PDF has no pages", pages=0),
    "pdf/unreadable_invalid-pages-tree_4pages.pdf": Expect(
        status="warning",
        message="page list is damaged",
        words=("5 Watt,Wirewound", "Mechanical Angle: 300°"),
    ),
    # DOCX
    "docx/normal_long_tracked-changes_hyperlinks.docx": Expect(
        words=(
            "If you are using ColdFusion 8, the newer MySQL drivers",  # a tracked insertion
            "four database types supported by BlogCFC",  # "three" deleted, "four" inserted
        ),
        absent=("ray.camdenfamily", "three database types", "threefour", "this option o"),
        # Deleted in one paragraph, plain text in another: exactly once.
        once=("I am not currently testing with MySQL 5, but it should work.",),
        sections=("License and Credits", "BlueDragon Notes"),
    ),
    "docx/tables_footer_footnotes_form.docx": Expect(
        words=("EOI – Refers to Expression of Interest", "RPA(1) –RES.GOV.CHECK"),
        sections=("Footer", "Footnotes"),
    ),
    "docx/headers-footers_2pages.docx": Expect(
        words=("This is a simple header, with a € euro symbol", "The footer, with Molière"),
        sections=("Header", "Footer", "Molière"),
    ),
    "docx/footnotes_endnotes_table_image_header.docx": Expect(
        words=(
            "First footnote",
            "Second footnote",
            "First endnote",
            "Second endnote",
            "Header text",
            "Footer text",
            "Nested | Table",
        ),
        sections=("Heading 1", "Heading 2", "Footnotes", "Endnotes"),
    ),
    "docx/footnotes_endnotes_only.docx": Expect(
        words=("This is a footnote", "This is an endnote"), sections=("Footnotes", "Endnotes")
    ),
    "docx/images_5-inline.docx": Expect(status="warning", message="This document has no text"),
    "docx/chinese_tender-doc_12tables.docx": Expect(words=("竞争性谈判采购公告",)),
    "docx/google-docs-export.docx": Expect(),
    "docx/strict-ooxml.docx": Expect(words=("Bullet1", "Number2", "Cellaa | Cellab")),
    "docx/empty_document.docx": Expect(status="warning", message="This document has no text"),
    "docx/not-a-zip_word97-binary.docx": Expect(
        status="error",
        message="This is an old Word 97-2003 .doc file: open it in Word or LibreOffice and "
        "save as .docx",
    ),
    # Text and Markdown
    "txt/large_war-and-peace_utf8-bom_crlf.txt": Expect(
        words=("Well, Prince, so Genoa and Lucca are now just family estates",)
    ),
    "txt/utf8-bom_japanese.txt": Expect(words=("universalchardet プロジェクトの概要",)),
    "txt/utf16le-bom_subtitles.txt": Expect(words=("About 2 months ago I found myself on",)),
    "txt/cp1252_dutch_with-0x85.txt": Expect(
        words=("Stipan Arkadiewitsch", "dat zij al.... Ach, het moest alles zoo komen!")
    ),
    "txt/latin1_finnish.txt": Expect(words=("Vielä ehdit perehtyä Sibeliuksen elämään",)),
    "txt/shiftjis_japanese_gutenberg.txt": Expect(
        words=("マルチン・ルターの小信仰問答書", "Project Gutenberg Etext")
    ),
    "txt/utf8_hebrew_rtl.txt": Expect(words=("העברית היא שפה המשתייכת",)),
    "md/readme_crlf_qpdf-windows.md": Expect(
        words=("Quick Start with JetBrains CLion",),
        sections=("Quick Start with JetBrains CLion", "Common Setup", "Runtime DLLs"),
    ),
    "md/readme_chinese_llama-factory.md": Expect(
        words=("LlamaFactory",), sections=("目录", "项目特色")
    ),
    "txt/empty.txt": Expect(status="warning", message="The file is empty"),
    "txt/binary_jpeg_renamed.txt": Expect(
        status="error", message="is not a text file (it looks like JPEG image data)"
    ),
}


UNLOCKED_WORDS = {
    "pdf/encrypted_userpw_rc4-128_libreoffice.pdf": "Lorem ipsum dolor sit amet, consetetur",
    "pdf/encrypted_userpw_aes-256.pdf": "The Crazy Ones October 14, 1998",
}


def manifest_rows() -> list[dict[str, str]]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = manifest_rows()


@cache
def loaded(name: str, password: str | None = None) -> Document:
    """Each file is loaded once per run (the 117-page PDF takes seconds)."""
    return load_document(CORPUS / name, password=password)


def flat(text: str) -> str:
    return " ".join(normalise_text(text).split())


def starting_words(row: dict[str, str]) -> str | None:
    """The manifest's "starts:" excerpt without its last, possibly cut, word."""
    observed = " ".join(value for key, value in row.items() if key.startswith("observed"))
    match = re.search(r'starts: "([^"]+)"', observed)
    if not match:
        return None
    words = match.group(1).split()
    return " ".join(words[:-1] if len(words) > 1 else words)


def manifest_password(row: dict[str, str], kind: str = "pw") -> str | None:
    """The user password ("(pw: …)") or owner password ("owner pw: …") named in the row."""
    pattern = r"\(pw: ([^)\s]+)\)" if kind == "pw" else r"owner pw: (\S+)"
    match = re.search(pattern, row["expected_behaviour"] + " " + row["note"])
    return match.group(1) if match else None


def assert_clean(document: Document) -> None:
    text = document.text
    assert "\ufffd" not in text
    assert "\x00" not in text
    controls = [char for char in text if ord(char) < 32 and char != "\n"]
    assert not controls and not re.search("[\x7f-\x9f]", text)
    assert not re.search("[\ufb00-\ufb06]", text)  # ligatures were NFKC-normalised
    assert "\n\n\n" not in text and text == text.strip()


def assert_well_formed(document: Document) -> None:
    pieces = [document.text[s.start : s.end] for s in document.segments]
    assert "\n\n".join(pieces) == document.text
    assert document.boundaries == sorted(set(document.boundaries))
    assert all(0 <= offset < max(1, document.chars) for offset in document.boundaries)
    assert {s.start for s in document.segments} <= set(document.boundaries)
    assert (document.status == "ok") == (document.message == "")
    if document.status == "warning":
        assert document.warnings and document.message == " ".join(document.warnings)
    if document.status == "error":
        assert document.text == "" and document.segments == []


def test_every_corpus_file_has_an_expectation() -> None:
    assert {row["file"] for row in ROWS} == set(EXPECTATIONS)


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_corpus_file(row: dict[str, str]) -> None:
    name = row["file"]
    expect = EXPECTATIONS[name]
    document = loaded(name)

    assert document.status == expect.status, document.message
    assert expect.message in document.message
    if expect.pages is not None:
        assert document.pages == expect.pages
    assert_clean(document)
    assert_well_formed(document)
    text = flat(document.text)
    words = list(expect.words)
    if expect.status == "ok" and starting_words(row):
        words.append(starting_words(row))
    for phrase in words:
        assert flat(phrase) in text, phrase
    for phrase in expect.absent:
        assert flat(phrase) not in text, phrase
    for phrase in expect.once:
        assert text.count(flat(phrase)) == 1, phrase
    sections = {segment.section for segment in document.segments}
    assert set(expect.sections) <= sections
    if name.endswith(".pdf") and document.segments:
        assert all(segment.page for segment in document.segments)
    # Reading never changes the original.
    assert hashlib.sha256((CORPUS / name).read_bytes()).hexdigest() == row["sha256"]


@pytest.mark.parametrize(
    "row",
    [row for row in ROWS if manifest_password(row)],
    ids=lambda row: row["file"],
)
def test_encrypted_pdf_with_its_password(row: dict[str, str]) -> None:
    name, password = row["file"], manifest_password(row)
    locked = loaded(name)
    assert locked.needs_password and locked.status == "error"
    wrong = loaded(name, "not-the-password")
    assert wrong.needs_password and wrong.message.startswith("The password is wrong")
    opened = loaded(name, password)
    assert opened.status == "ok", opened.message
    assert not opened.needs_password and opened.pages == 1
    assert_clean(opened)
    assert_well_formed(opened)
    assert flat(UNLOCKED_WORDS[name]) in flat(opened.text)
    owner = manifest_password(row, "owner")
    if owner:
        assert loaded(name, owner).text == opened.text
