"""Heuristics that tell extracted text from garbage.

Extractors fail silently: a PDF font without a Unicode map yields replacement characters,
control codes, private-use code points or Latin-1 junk in place of words. These checks run on
the raw text (before normalisation strips the evidence) and are tuned to stay quiet on real
multilingual text: Chinese, Japanese, Arabic, Hebrew, Russian, math-heavy German.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

_MIN_VISIBLE = 8  # fewer visible characters than this: too little to judge
_MAX_UNREADABLE_RATIO = 0.03  # replacement, private-use, unassigned: never common in text
_MAX_CONTROL_RATIO = 0.20  # math fonts without a Unicode map give some control codes
_MIN_LETTER_RATIO = 0.35  # letters, marks and digits among visible characters
_MAX_SOUP_RATIO = 0.10  # words that mix alphabets
_MAX_MOJIBAKE_RATIO = 0.30  # non-ASCII words that are UTF-8 read with another code page
_MAX_LATIN1_RATIO = 0.35  # Latin-1 supplement characters among Latin letters
_MIN_SUSPECT_WORDS = 3
_MIN_LATIN_LETTERS = 20
_MIN_LATIN1_JUNK = 8

_SAMPLE_WINDOWS = 32
_SAMPLE_WINDOW_CHARS = 1024

_WHITESPACE = " \t\n\r\x0b\x0c\u00a0\u2028\u2029\u3000"
_ASCII = re.compile(r"[\x00-\x7f]+")
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_ALPHANUMERIC = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_LETTER_RUN = re.compile(r"[^\W\d_]{2,}")
# Counted by deleting everything else: faster than collecting matches.
_NOT_LATIN1_SUPPLEMENT = re.compile(r"[^\u00a0-\u00ff]+")
_NOT_LATIN_LETTER = re.compile(r"[^A-Za-z\u00c0-\u024f]+")
# Scripts that are written next to Latin or each other without spaces in ordinary text.
_IDEOGRAPHIC = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO", "IDEOGRAPHIC"})
# Character-name prefixes that do not name a script.
_NOT_A_SCRIPT = frozenset(
    {
        "",
        "COMBINING",
        "MODIFIER",
        "FULLWIDTH",
        "HALFWIDTH",
        "SMALL",
        "DIGIT",
        "MICRO",
        "FEMININE",
        "MASCULINE",
    }
)
# Code pages that UTF-8 is most often mistaken for; the first ones are the common case.
_MISREAD_AS = ("cp1252", "latin-1", "cp1251", "cp1250", "shift_jis", "gbk")
_MAX_WORDS_TRIED = 300
# Non-ASCII letters outside the CJK area: a word without any cannot mix alphabets.
_BELOW_CJK = re.compile(r"[\u0080-\u2e7f\ua000-\uabff]")


def looks_garbled(text: str) -> str | None:
    """Return why ``text`` looks like extraction garbage, or None when it looks like text."""
    sample = _sample(text)
    visible = len(sample) - sum(sample.count(char) for char in _WHITESPACE)
    if visible < _MIN_VISIBLE:
        return None
    # ASCII is counted with C-speed string operations; only the rest needs Unicode categories.
    non_ascii = _ASCII.sub("", sample)
    categories = Counter(map(unicodedata.category, non_ascii))
    reason = _bad_characters(sample, categories, visible) or _few_letters(
        sample, categories, visible
    )
    if reason:
        return reason
    if not any(category[0] == "L" for category in categories):
        return None  # the rest needs non-ASCII letters (curly quotes and dashes are not)
    return _script_soup(sample) or _mojibake(sample) or _latin1_junk(sample, non_ascii)


def _sample(text: str) -> str:
    """Evenly spaced windows of a long text, so the checks cost the same on any size."""
    budget = _SAMPLE_WINDOWS * _SAMPLE_WINDOW_CHARS
    if len(text) <= budget:
        return text
    step = len(text) // _SAMPLE_WINDOWS
    return "\n".join(
        text[offset : offset + _SAMPLE_WINDOW_CHARS] for offset in range(0, len(text), step)
    )


def _bad_characters(sample: str, categories: Counter[str], visible: int) -> str:
    unreadable = sample.count("\ufffd") + categories["Co"] + categories["Cs"] + categories["Cn"]
    controls = len(_ASCII_CONTROLS.findall(sample)) + categories["Cc"]
    if unreadable / visible > _MAX_UNREADABLE_RATIO or controls / visible > _MAX_CONTROL_RATIO:
        return f"{(unreadable + controls) / visible:.0%} of the characters are unreadable"
    return ""


def _few_letters(sample: str, categories: Counter[str], visible: int) -> str:
    ascii_bytes = sample.encode("ascii", errors="ignore")
    ascii_alphanumeric = len(ascii_bytes) - len(ascii_bytes.translate(None, _ALPHANUMERIC))
    other = sum(count for category, count in categories.items() if category[0] in "LMN")
    letters = ascii_alphanumeric + other
    if letters / visible < _MIN_LETTER_RATIO:
        return f"only {letters / visible:.0%} of the characters are letters or digits"
    return ""


def _script_soup(sample: str) -> str | None:
    """Words that mix alphabets (Latin inside Cyrillic inside Greek…) are not real words."""
    words = _LETTER_RUN.findall(sample)
    soup = sum(1 for word in words if _BELOW_CJK.search(word) and _mixes_alphabets(word))
    if soup >= _MIN_SUSPECT_WORDS and soup / len(words) > _MAX_SOUP_RATIO:
        return f"{soup / len(words):.0%} of the words mix alphabets"
    return None


def _mixes_alphabets(word: str) -> bool:
    scripts = {_script(char) for char in word}
    scripts -= _IDEOGRAPHIC
    scripts.discard("")
    return len(scripts) > 1


@lru_cache(maxsize=8192)
def _script(char: str) -> str:
    """The script of a letter, from its Unicode name ("CYRILLIC SMALL LETTER A" -> "CYRILLIC")."""
    prefix = unicodedata.name(char, "").split(" ", 1)[0]
    return "" if prefix in _NOT_A_SCRIPT else prefix


def _mojibake(sample: str) -> str | None:
    """UTF-8 shown in a legacy code page ("ä¸­æ–‡" for "中文") turns back into UTF-8."""
    words = [word for word in sample.split() if not word.isascii()]
    words = words[:: max(1, len(words) // _MAX_WORDS_TRIED)]  # evenly spread, bounded cost
    if not words:
        return None
    suspect = sum(1 for word in words if _is_misread_utf8(word))
    if suspect >= _MIN_SUSPECT_WORDS and suspect / len(words) > _MAX_MOJIBAKE_RATIO:
        return "UTF-8 text read with the wrong code page"
    return None


def _is_misread_utf8(word: str) -> bool:
    for codec in _MISREAD_AS:
        try:
            if word.encode(codec).decode("utf-8") != word:
                return True
        except UnicodeError:
            continue
    return False


def _latin1_junk(sample: str, non_ascii: str) -> str | None:
    """Fonts without a Unicode map often come out as Latin-1 symbols and accented letters."""
    supplement = len(_NOT_LATIN1_SUPPLEMENT.sub("", non_ascii))
    if supplement < _MIN_LATIN1_JUNK:
        return None
    latin = len(_NOT_LATIN_LETTER.sub("", sample))
    if latin >= _MIN_LATIN_LETTERS and supplement / latin > _MAX_LATIN1_RATIO:
        return "too many accented letters and symbols for real words"
    return None
