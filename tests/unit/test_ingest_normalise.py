"""normalise_text: the cleaning every loader applies."""

from __future__ import annotations

import pytest

from finetuneflow.core.ingest import normalise_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ﬁnd the ﬂow", "find the flow"),  # ligatures (NFKC)
        ("Ａｂｃ １２３", "Abc 123"),  # full-width forms (NFKC)
        ("a\u00a0b\u2003c", "a b c"),  # no-break and em spaces
        ("one\r\ntwo\rthree\nfour", "one\ntwo\nthree\nfour"),
        ("page one\x0cpage two", "page one\npage two"),  # form feed is a break
        ("a\u2028b\u2029c", "a\nb\nc"),
        ("nul\x00 and\x01 bell\x07", "nul and bell"),
        ("keep\ttab", "keep tab"),  # a tab is kept as a space, not glued
        ("c1 \x85control", "c1 control"),  # NEL is junk, not a line break
        ("soft\u00adhyphen", "softhyphen"),
        ("bom\ufeffinside", "bominside"),
        ("replace\ufffdment", "replacement"),
        ("lone \ud800surrogate", "lone surrogate"),
        ("many    spaces\t\t and tabs", "many spaces and tabs"),
        ("line end   \n   next", "line end\nnext"),
        ("a\n\n\n\n\nb", "a\n\nb"),  # at most one blank line
        ("a\n \n\t\n  \nb", "a\n\nb"),  # blank lines made of spaces too
        ("  \n\n  padded  \n\n ", "padded"),
        ("exam-\nple", "example"),
        ("exam- \n  ple", "example"),
        ("Jean-\nPaul", "Jean-\nPaul"),  # capital after the break: a real hyphen
        ("2019-\n2020", "2019-\n2020"),
        ("Kartof-\nfeln und Äp-\nfel", "Kartoffeln und Äpfel"),
        ("", ""),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise_text(raw) == expected


def test_normalise_is_idempotent() -> None:
    raw = "ﬁrst  line\r\n\r\n\r\nsecond exam-\nple\x00 ok\u00a0done"
    once = normalise_text(raw)
    assert normalise_text(once) == once


def test_normalised_text_encodes_as_utf8() -> None:
    raw = "".join(chr(code) for code in range(0, 0x3000)) + "\ud83d\udca9 \udfff"
    normalise_text(raw).encode("utf-8")  # no lone surrogate left
