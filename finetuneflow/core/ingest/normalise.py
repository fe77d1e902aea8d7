"""Text normalisation shared by every loader.

The text goes to a database, to JSON and to a tokenizer, so it must be clean Unicode with
predictable whitespace, whatever the extractor produced.
"""

from __future__ import annotations

import re
import unicodedata

# Line and page separators. Only explicit ones: str.splitlines() would also split on NEL (\x85),
# which is a stray control character in text that was decoded with the wrong code page.
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\u2028\u2029]")
_LINE_BREAK_CHARS = "\r\x0b\x0c\u2028\u2029"

# C0/C1 controls except \t and \n (math fonts give NUL in PDFs), the soft hyphen, a stray BOM,
# the replacement character, non-characters and lone surrogates (which cannot be encoded).
_JUNK = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\ufeff\ufffd\ufffe\uffff\ud800-\udfff]")

# Patterns match only what changes (not every single space or newline): fewer replacements.
_HORIZONTAL_SPACE = re.compile(r"[ \t]{2,}|\t")
_SPACE_AROUND_NEWLINE = re.compile(r" \n ?|\n ")
_BLANK_LINES = re.compile(r"\n{3,}")
# A hyphen at the end of a line before a letter: maybe a word split by the layout. Starting
# with a literal lets the regex engine jump between hyphens.
_LINE_END_HYPHEN = re.compile(r"-\n(?=[^\W\d_])")


def normalise_text(text: str) -> str:
    """Clean ``text``: line breaks to \\n, NFKC, no controls, single spaces, one blank line at most.

    Words hyphenated across a line break ("exam-\\nple") are joined when the next line starts
    with a lower-case letter, so "Jean-\\nPaul" stays as it is.
    """
    # The substring tests are much cheaper than a regex scan and usually fail.
    if any(char in text for char in _LINE_BREAK_CHARS):
        text = _LINE_BREAKS.sub("\n", text)
    text = _JUNK.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    if "  " in text or "\t" in text:
        text = _HORIZONTAL_SPACE.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    if "-\n" in text:
        text = _LINE_END_HYPHEN.sub(_join_hyphenated, text)
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def _join_hyphenated(match: re.Match[str]) -> str:
    text, start = match.string, match.start()
    before = text[start - 1] if start else ""
    after = text[match.end()]
    if before.isalpha() and after.islower():
        return ""
    return match.group(0)
