"""Word documents built with python-docx (and patched XML where python-docx has no API)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import docx
import pytest
from docx.oxml import parse_xml
from docx.oxml.ns import nsdecls

from finetuneflow.core.ingest import Document, detect_kind, load_document

W_MAIN = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NOTE_TYPES = {
    "footnotes": (
        "footnote",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml",
    ),
    "endnotes": (
        "endnote",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.endnotes+xml",
    ),
}


def build(
    tmp_path: Path, fill: Callable[[docx.document.Document], None], name: str = "d.docx"
) -> Path:
    document = docx.Document()
    fill(document)
    path = tmp_path / name
    document.save(str(path))
    return path


def rewrite_parts(path: Path, change: Callable[[str, bytes], bytes], add: dict[str, bytes]) -> None:
    """Rewrite a .docx in place: ``change(name, data)`` for each part, then add new parts."""
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in parts.items():
            target.writestr(name, change(name, data))
        for name, data in add.items():
            target.writestr(name, data)


def add_notes(path: Path, kind: str, texts: list[str]) -> None:
    """Add word/footnotes.xml or word/endnotes.xml, with Word's two separator notes first."""
    element, content_type = NOTE_TYPES[kind]
    separators = (
        f'<w:{element} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p>'
        f"</w:{element}>"
        f'<w:{element} w:type="continuationSeparator" w:id="0"><w:p><w:r>'
        f"<w:continuationSeparator/></w:r></w:p></w:{element}>"
    )
    notes = "".join(
        f'<w:{element} w:id="{number}"><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:{element}>'
        for number, text in enumerate(texts, start=1)
    )
    xml = f'<w:{kind} xmlns:w="{W_MAIN}">{separators}{notes}</w:{kind}>'.encode()

    def change(name: str, data: bytes) -> bytes:
        if name == "word/_rels/document.xml.rels":
            rel = (
                f'<Relationship Id="rIdNotes{kind}" Type="{RELATIONSHIPS}/{kind}" '
                f'Target="{kind}.xml"/>'
            )
            return data.replace(b"</Relationships>", rel.encode() + b"</Relationships>")
        if name == "[Content_Types].xml":
            override = f'<Override PartName="/word/{kind}.xml" ContentType="{content_type}"/>'
            return data.replace(b"</Types>", override.encode() + b"</Types>")
        return data

    rewrite_parts(path, change, {f"word/{kind}.xml": xml})


def to_strict(path: Path) -> None:
    """Turn a transitional .docx into Strict Open XML: same parts, the Strict namespaces."""

    def change(name: str, data: bytes) -> bytes:
        if not name.endswith((".xml", ".rels")):
            return data
        data = data.replace(
            b"http://schemas.openxmlformats.org/wordprocessingml/2006/main",
            b"http://purl.oclc.org/ooxml/wordprocessingml/main",
        )
        return data.replace(
            RELATIONSHIPS.encode(), b"http://purl.oclc.org/ooxml/officeDocument/relationships"
        )

    rewrite_parts(path, change, {})


def rich_document(document: docx.document.Document) -> None:
    document.add_heading("Annual Report", level=0)
    document.add_paragraph("Opening paragraph of the body.")
    document.add_heading("Results", level=1)
    document.add_paragraph("Sales grew in every region.")
    table = document.add_table(rows=3, cols=3)
    wide = table.cell(0, 0).merge(table.cell(0, 1))
    wide.text = "Merged across"
    table.cell(0, 2).text = "Top right"
    table.cell(1, 0).text = "North"
    table.cell(1, 1).text = "12"
    tall = table.cell(1, 2).merge(table.cell(2, 2))
    tall.text = "Merged down"
    table.cell(2, 0).text = "South"
    table.cell(2, 1).text = "7"
    document.add_heading("Outlook", level=2)
    document.add_paragraph("Next year looks fine.")
    section = document.sections[0]
    section.header.paragraphs[0].text = "ACME Corporation"
    section.footer.paragraphs[0].text = "Confidential"
    second = document.add_section()
    second.header.is_linked_to_previous = False
    second.header.paragraphs[0].text = "ACME Corporation"  # same text, another part
    second.footer.is_linked_to_previous = False
    second.footer.paragraphs[0].text = "Appendix footer"
    document.add_paragraph("Appendix text.")


@pytest.fixture
def rich(tmp_path: Path) -> Document:
    path = build(tmp_path, rich_document)
    add_notes(path, "footnotes", ["A footnote with a source.", "Second footnote."])
    add_notes(path, "endnotes", ["The only endnote."])
    return load_document(path)


def test_body_tables_and_headings_in_reading_order(rich: Document) -> None:
    assert rich.kind == "docx" and rich.status == "ok", rich.message
    text = rich.text
    order = [
        "Annual Report",
        "Opening paragraph",
        "Results",
        "Sales grew",
        "Merged across",
        "North | 12 | Merged down",
        "South | 7",
        "Outlook",
        "Next year",
        "Appendix text.",
    ]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)
    assert "Merged across | Top right" in text
    assert text.count("Merged across") == 1 and text.count("Merged down") == 1


def test_headings_start_sections_and_are_boundaries(rich: Document) -> None:
    sections = [segment.section for segment in rich.segments]
    assert sections[:3] == ["Annual Report", "Results", "Outlook"]
    for segment in rich.segments:
        assert segment.start in rich.boundaries
        assert (
            rich.text[segment.start : segment.end] == rich.text[segment.start : segment.end].strip()
        )
    results = next(segment for segment in rich.segments if segment.section == "Results")
    assert rich.text[results.start :].startswith("Results")
    assert rich.boundaries == sorted(rich.boundaries)


def test_headers_and_footers_once(rich: Document) -> None:
    assert rich.text.count("ACME Corporation") == 1
    assert "Confidential" in rich.text and "Appendix footer" in rich.text
    parts = {segment.section: rich.text[segment.start : segment.end] for segment in rich.segments}
    assert parts["Header"] == "ACME Corporation"
    assert parts["Footer"] == "Confidential\n\nAppendix footer"


def test_footnotes_and_endnotes_without_separators(rich: Document) -> None:
    parts = {segment.section: rich.text[segment.start : segment.end] for segment in rich.segments}
    assert parts["Footnotes"] == "A footnote with a source.\n\nSecond footnote."
    assert parts["Endnotes"] == "The only endnote."
    assert list(parts)[-2:] == ["Footnotes", "Endnotes"]


def test_damaged_footnotes_are_left_out_and_the_body_kept(tmp_path: Path) -> None:
    path = build(tmp_path, rich_document)
    add_notes(path, "footnotes", ["A footnote."])
    rewrite_parts(path, lambda name, data: data[:60] if name == "word/footnotes.xml" else data, {})
    document = load_document(path)
    assert document.status == "warning"
    assert document.message.startswith("The footnotes could not be read and were left out")
    assert "Sales grew in every region." in document.text and "Footnotes" not in {
        segment.section for segment in document.segments
    }


def test_tracked_changes_keep_insertions_and_drop_deletions(tmp_path: Path) -> None:
    def fill(document: docx.document.Document) -> None:
        paragraph = document.add_paragraph("Kept start. ")
        paragraph._p.append(
            parse_xml(
                f'<w:ins {nsdecls("w")} w:id="1" w:author="a" w:date="2024-01-01T00:00:00Z">'
                "<w:r><w:t>Inserted words.</w:t></w:r></w:ins>"
            )
        )
        paragraph._p.append(
            parse_xml(
                f'<w:del {nsdecls("w")} w:id="2" w:author="a" w:date="2024-01-01T00:00:00Z">'
                '<w:r><w:delText xml:space="preserve"> Deleted words.</w:delText></w:r></w:del>'
            )
        )
        paragraph._p.append(
            parse_xml(f'<w:r {nsdecls("w")}><w:fldChar w:fldCharType="begin"/></w:r>')
        )
        paragraph._p.append(
            parse_xml(f"<w:r {nsdecls('w')}><w:instrText> PAGE </w:instrText></w:r>")
        )
        document.add_paragraph("Kept end.")

    document = load_document(build(tmp_path, fill))
    assert "Kept start. Inserted words." in document.text
    assert "Kept end." in document.text
    assert "Deleted" not in document.text and "PAGE" not in document.text


def test_text_boxes_are_read_once(tmp_path: Path) -> None:
    box = "<w:txbxContent><w:p><w:r><w:t>Text in a box.</w:t></w:r></w:p></w:txbxContent>"

    def fill(document: docx.document.Document) -> None:
        paragraph = document.add_paragraph("Before the box.")
        paragraph._p.append(
            parse_xml(
                f'<w:r {nsdecls("w")} xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006">'
                f'<mc:AlternateContent><mc:Choice Requires="wps"><w:drawing>{box}</w:drawing>'
                f"</mc:Choice><mc:Fallback><w:pict>{box}</w:pict></mc:Fallback>"
                "</mc:AlternateContent></w:r>"
            )
        )

    document = load_document(build(tmp_path, fill))
    assert document.text.count("Text in a box.") == 1
    assert document.text.index("Before the box.") < document.text.index("Text in a box.")


def test_strict_open_xml_is_read(tmp_path: Path) -> None:
    path = build(tmp_path, rich_document)
    add_notes(path, "footnotes", ["Strict footnote."])
    to_strict(path)
    assert b"purl.oclc.org" in zipfile.ZipFile(path).read("word/document.xml")
    document = load_document(path)
    assert document.status == "ok", document.message
    assert "Sales grew in every region." in document.text
    assert "Strict footnote." in document.text
    assert [s.section for s in document.segments][:3] == ["Annual Report", "Results", "Outlook"]


def test_unreadable_strict_file_says_how_to_fix_it(tmp_path: Path) -> None:
    path = build(tmp_path, rich_document)
    to_strict(path)
    rewrite_parts(path, lambda name, data: data[:200] if name == "word/document.xml" else data, {})
    document = load_document(path)
    assert document.status == "error"
    assert "Strict Open XML" in document.message
    assert "re-save it as a Word Document (.docx)" in document.message


def test_legacy_doc_renamed_docx(tmp_path: Path) -> None:
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "WordDocument".encode("utf-16-le")
    path = tmp_path / "old.docx"
    path.write_bytes(ole2 + bytes(2048))
    document = load_document(path)
    assert document.status == "error"
    assert document.message == (
        "This is an old Word 97-2003 .doc file: open it in Word or LibreOffice and save as .docx."
    )
    assert detect_kind(path) is None


def test_password_protected_office_file(tmp_path: Path) -> None:
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "EncryptedPackage".encode("utf-16-le")
    path = tmp_path / "locked.docx"
    path.write_bytes(ole2)
    document = load_document(path)
    assert document.status == "error" and "password-protected Office file" in document.message


def test_truncated_docx(tmp_path: Path) -> None:
    path = build(tmp_path, rich_document)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    document = load_document(path)
    assert document.status == "error"
    assert "damaged or incomplete" in document.message and "save it again" in document.message


def test_zip_that_is_not_a_word_document(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    path = tmp_path / "sheet.docx"
    path.write_bytes(buffer.getvalue())
    document = load_document(path)
    assert document.status == "error"
    assert "unsupported file type" in document.message and "Excel workbook" in document.message


def test_empty_document_is_a_warning(tmp_path: Path) -> None:
    document = load_document(build(tmp_path, lambda document: None))
    assert document.status == "warning"
    assert document.message.startswith("This document has no text")


def test_little_text_is_a_warning(tmp_path: Path) -> None:
    document = load_document(build(tmp_path, lambda document: document.add_paragraph("Fig. 1")))
    assert document.status == "warning"
    assert "very little text" in document.message and document.text == "Fig. 1"


def test_docx_named_pdf_is_read_with_a_warning(tmp_path: Path) -> None:
    path = build(tmp_path, rich_document, name="report.pdf")
    document = load_document(path)
    assert document.kind == "docx" and document.status == "warning"
    assert re.match(r"report\.pdf is named \.pdf but it is a Word document", document.message)
    assert "Sales grew" in document.text


def test_text_named_docx_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "page.docx"
    path.write_text("<html><body>Not found</body></html>")
    document = load_document(path)
    assert document.status == "error"
    assert "is named .docx but it is not a Word document" in document.message


def test_the_original_file_is_not_modified(tmp_path: Path) -> None:
    path = build(tmp_path, rich_document)
    before = path.read_bytes()
    load_document(path)
    assert path.read_bytes() == before
