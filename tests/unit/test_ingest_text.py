"""Plain text and Markdown: encodings, line endings, headings, and files that are not text."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from finetuneflow.core.ingest import Document, IngestLimits, load_document

ENGLISH = "The quick brown fox jumps over the lazy dog.\nSecond line of the text.\n"
RUSSIAN = "Привет, как дела? Это тестовый текст на русском языке.\nВторая строка.\n"
CHINESE = "这是一个用于测试编码检测的中文文本。我们需要确保它能够被正确识别。\n第二行。\n"
JAPANESE = "これは文字コード判定のテスト用の日本語の文章です。\n二行目です。\n"
FRENCH = "Le cœur a ses raisons que la raison ne connaît point. Déjà vu, très élégant.\n"
FINNISH = "Vielä ehdit perehtyä näyttelyyn ja nähdä säveltäjän elämään liittyviä esineitä.\n"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load_bytes(tmp_path: Path, data: bytes, name: str = "doc.txt") -> Document:
    return load_document(write(tmp_path, name, data))


def assert_clean(text: str) -> None:
    assert "\ufffd" not in text
    assert not any(ord(char) < 32 and char not in "\n\t" for char in text)
    assert not any(0x7F <= ord(char) <= 0x9F for char in text)


@pytest.mark.parametrize(
    ("text", "encoding", "prefix"),
    [
        (ENGLISH, "utf-8", codecs.BOM_UTF8),
        (RUSSIAN, "utf-8", codecs.BOM_UTF8),
        (ENGLISH, "utf-16-le", codecs.BOM_UTF16_LE),
        (CHINESE, "utf-16-be", codecs.BOM_UTF16_BE),
        (RUSSIAN, "utf-32-le", codecs.BOM_UTF32_LE),
        (JAPANESE, "utf-32-be", codecs.BOM_UTF32_BE),
        (ENGLISH, "utf-16-le", b""),  # BOM-less UTF-16: a NUL after every ASCII byte
        (ENGLISH, "utf-16-be", b""),
        (RUSSIAN, "utf-16-le", b""),  # high bytes 0x04, NULs only for spaces and punctuation
        (CHINESE, "utf-16-le", b""),  # U+4E00 puts NULs in the other lane
        (RUSSIAN, "utf-32-le", b""),
        (CHINESE, "utf-8", b""),
        (RUSSIAN, "cp1251", b""),
        (RUSSIAN, "koi8-r", b""),
        (FRENCH * 3, "cp1252", b""),
        (FINNISH * 3, "latin-1", b""),
        (CHINESE * 3, "gb18030", b""),
        (JAPANESE * 3, "shift_jis", b""),
        (JAPANESE * 3, "euc-jp", b""),
    ],
)
def test_encodings(tmp_path: Path, text: str, encoding: str, prefix: bytes) -> None:
    document = load_bytes(tmp_path, prefix + text.encode(encoding))
    assert document.status == "ok", document.message
    assert document.kind == "text"
    assert document.text == text.strip().replace("\n", "\n")
    assert not document.text.startswith("\ufeff")


def test_cp1252_whose_only_non_ascii_byte_is_far_from_the_start(tmp_path: Path) -> None:
    # One 0x85 (an ellipsis in cp1252, NEL in Latin-1) after 1930 ASCII bytes.
    head = ("Anna Karenina, deel een. " * 80)[:1930].encode("ascii")
    document = load_bytes(tmp_path, head + b"al\x85. Het einde van het verhaal.\n")
    assert document.status == "ok"
    assert "al.... Het einde" in document.text  # "…" is NFKC-normalised to "..."
    assert_clean(document.text)
    assert "\n" not in document.text  # NEL did not become a line break


def test_shift_jis_after_12_kb_of_ascii(tmp_path: Path) -> None:
    header = ("Project Gutenberg header line, plain ASCII only.\n" * 260).encode("ascii")
    assert len(header) > 12 * 1024
    document = load_bytes(tmp_path, header + (JAPANESE * 5).encode("shift_jis"))
    assert document.status == "ok"
    assert "文字コード判定" in document.text
    assert_clean(document.text)


def test_a_stray_nul_does_not_make_utf8_look_like_utf16(tmp_path: Path) -> None:
    for data in (b"plain text\x00 with a stray NUL", b"a\x00b\x00c, more text\x00 and more"):
        document = load_bytes(tmp_path, data)
        assert document.status == "error"  # NUL bytes: binary, never decoded as CJK
    document = load_bytes(tmp_path, "Hi".encode("utf-16-le"))
    assert document.text == "Hi"


def test_line_endings_and_nel(tmp_path: Path) -> None:
    data = "first\r\nsecond\rthird\nfourth\u0085same line\u2028fifth".encode()
    document = load_bytes(tmp_path, data)
    assert document.text == "first\nsecond\nthird\nfourthsame line\nfifth"


def test_text_is_normalised_and_segmented(tmp_path: Path) -> None:
    data = (
        "Paragraph   one with a ﬁne ligature and exam-\nple.\r\n\r\n\r\n\r\nParagraph two.".encode()
    )
    document = load_bytes(tmp_path, data)
    assert document.text == "Paragraph one with a fine ligature and example.\n\nParagraph two."
    assert len(document.segments) == 1
    segment = document.segments[0]
    assert (segment.start, segment.end, segment.page, segment.section) == (
        0,
        document.chars,
        None,
        None,
    )
    assert document.boundaries == [0, document.text.index("Paragraph two")]
    assert document.pages is None


def test_markdown_headings_become_sections(tmp_path: Path) -> None:
    markdown = (
        "---\ntitle: Front matter\n---\n"
        "Intro text before any heading.\n\n"
        "# Installation #\n\nRun the installer.\n\n"
        "```bash\n# not a heading, a shell comment\npip install x\n```\n\n"
        "Usage\n=====\n\nCall it.\n\n"
        "Details\n-------\nMore.\n\n"
        "- a list item\n---\n\n"
        "## API\nThe end.\n"
    )
    document = load_bytes(tmp_path, markdown.encode(), name="README.md")
    assert document.kind == "markdown"
    assert document.status == "ok"
    sections = [segment.section for segment in document.segments]
    assert sections == [None, "Installation", "Usage", "Details", "API"]
    starts = {segment.section: segment.start for segment in document.segments}
    assert document.text[starts["Installation"] :].startswith("# Installation #")
    assert document.text[starts["Usage"] :].startswith("Usage\n=====")
    assert set(starts.values()) <= set(document.boundaries)
    assert "# not a heading, a shell comment" in document.text
    for segment in document.segments:
        assert (
            document.text[segment.start : segment.end].strip()
            == document.text[segment.start : segment.end]
        )


def test_segments_cover_the_text_in_order(tmp_path: Path) -> None:
    document = load_bytes(tmp_path, b"# A\none\n\n# B\ntwo\n\n# C\nthree", name="x.markdown")
    pieces = [document.text[s.start : s.end] for s in document.segments]
    assert "\n\n".join(pieces) == document.text
    assert [s.start for s in document.segments] == sorted(s.start for s in document.segments)


def test_empty_file_is_a_warning(tmp_path: Path) -> None:
    document = load_bytes(tmp_path, b"")
    assert document.status == "warning"
    assert document.message.startswith("The file is empty")
    assert document.text == "" and document.segments == []


def test_whitespace_only_file_is_a_warning(tmp_path: Path) -> None:
    document = load_bytes(tmp_path, b" \r\n\t\n   \n")
    assert document.status == "warning"
    assert "no text" in document.message


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8, "JPEG image data"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "PNG image data"),
        (b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4, "gzip-compressed data"),
        (b"\x7fELF\x02\x01\x01" + bytes(64), "a program (ELF executable)"),
        (bytes(range(256)) * 16, "binary data"),
    ],
)
def test_binary_named_as_text_is_rejected(tmp_path: Path, data: bytes, what: str) -> None:
    document = load_bytes(tmp_path, data, name="notes.txt")
    assert document.status == "error"
    assert document.text == ""
    assert f"notes.txt is not a text file (it looks like {what})" in document.message


def test_oversize_file_is_rejected_with_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", b"x" * 5000)
    document = load_document(path, limits=IngestLimits(max_bytes=1000))
    assert document.status == "error"
    assert "limit" in document.message and "Settings" in document.message
    assert load_document(path, limits=IngestLimits(max_bytes=5000)).status == "ok"


def test_missing_file_and_folder_are_errors(tmp_path: Path) -> None:
    missing = load_document(tmp_path / "gone.txt")
    assert missing.status == "error" and "could not be read" in missing.message
    folder = load_document(tmp_path)
    assert folder.status == "error" and "not a file" in folder.message


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.txt", b"text")
    path.chmod(0)
    try:
        document = load_document(path)
    finally:
        path.chmod(0o644)
    assert document.status == "error" and "could not be read" in document.message


def test_the_original_file_is_not_modified(tmp_path: Path) -> None:
    data = codecs.BOM_UTF8 + "ﬁ\r\nline\x00\r\n".encode()
    path = write(tmp_path, "orig.txt", data)
    stat_before = path.stat()
    load_document(path)
    assert path.read_bytes() == data
    assert path.stat().st_mtime_ns == stat_before.st_mtime_ns
