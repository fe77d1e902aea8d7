"""Decoding plain-text bytes whose encoding nobody wrote down.

Order: a BOM; a BOM-less UTF-16/32 NUL pattern; strict UTF-8; then charset-normalizer over
the whole file. A sniffer that reads only the start is wrong on real files: the corpus has a
cp1252 file whose only non-ASCII byte is at offset 1930 and a Shift_JIS file that is pure ASCII
for its first 12 KB.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass

from charset_normalizer import from_bytes
from charset_normalizer.utils import is_multi_byte_encoding

# Longest BOMs first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_PATTERN_SAMPLE = 4096
_UTF32_HIGH_LANES = 0.9  # the top bytes of a UTF-32 unit are NUL for every BMP character
_UTF16_HIGH_LANE = 0.1  # at least the spaces of UTF-16 text have a NUL high byte
_STRAY = 0.01
_UTF16_MIN_NULS = 0.005
_MIN_NULS = 2
_MAX_HIGH_BYTE_VALUES = 8
_MAX_UNREADABLE_SHARE = 0.01
_TEXT_CONTROLS = frozenset("\t\n\r\x0b\x0c")

# charset-normalizer measures chunks spread over the file; this makes them cover it (up to
# 512 KB of samples), while decodability is checked on every byte.
_DETECTION_CHUNK = 4096
_MAX_DETECTION_STEPS = 128

_LETTER = re.compile(r"[^\W\d_]")
_NON_ASCII_LETTER = re.compile(r"[^\W\d_\x00-\x7f]")
_LATIN1_SYMBOL = r"[\u00a1-\u00a9\u00ab-\u00b4\u00b6-\u00b9\u00bb-\u00bf]"
_SYMBOL_IN_WORD = re.compile(rf"(?<=[^\W\d_]){_LATIN1_SYMBOL}(?=[^\W\d_])")
_UNREADABLE = frozenset({"Cc", "Cn", "Co", "Cs"})
_MAX_ACCENTED_SHARE = 0.25
_MAX_SYMBOL_IN_WORD_SHARE = 0.05


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str


def decode_text(data: bytes) -> DecodedText | None:
    """Decode ``data``, or return None when it is not text in any encoding we can tell."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return DecodedText(data[len(bom) :].decode(encoding, errors="replace"), encoding)
    wide = wide_unicode_without_bom(data)
    if wide:
        return DecodedText(data.decode(wide, errors="replace"), wide)
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        return _decode_by_detection(data)


def wide_unicode_without_bom(data: bytes) -> str | None:
    """UTF-32 or UTF-16 without a BOM, recognised by its NUL bytes, or None.

    Text has no NUL bytes of its own. NULs confined to one byte lane are the high bytes of
    ASCII (UTF-16) or of every character (UTF-32); such data even passes a strict UTF-8 decode,
    which is why this check comes first. CJK in UTF-16 has fewer NULs, in both lanes (U+4E00,
    newlines), so it is accepted when the bytes are not UTF-8 and one byte order reads cleanly.
    """
    sample = data[:_PATTERN_SAMPLE]
    sample = sample[: len(sample) - len(sample) % 4]
    if sample.count(0) < _MIN_NULS:  # a stray NUL or two proves nothing
        return None
    lanes = _nul_share_per_lane(sample, 4)
    if min(lanes[2], lanes[3]) > _UTF32_HIGH_LANES and lanes[0] < _STRAY:
        return "utf-32-le"
    if min(lanes[0], lanes[1]) > _UTF32_HIGH_LANES and lanes[3] < _STRAY:
        return "utf-32-be"
    even, odd = _nul_share_per_lane(sample, 2)
    high_lane = 0 if even > odd else 1
    one_lane = (
        max(even, odd) > _UTF16_HIGH_LANE
        and min(even, odd) < _STRAY
        # The high bytes of one alphabet take few values (0x00 and 0x04 for Cyrillic); NULs
        # strewn in ASCII text have arbitrary neighbours.
        and len(set(sample[high_lane::2])) <= _MAX_HIGH_BYTE_VALUES
    )
    if one_lane or (not _is_utf8(data) and sample.count(0) / len(sample) > _UTF16_MIN_NULS):
        encoding, unreadable = _likelier_byte_order(sample, "utf_16")
        if unreadable <= _MAX_UNREADABLE_SHARE * len(sample) / 2:
            return encoding
    return None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _nul_share_per_lane(sample: bytes, width: int) -> list[float]:
    units = max(1, len(sample) // width)
    return [sample[lane::width].count(0) / units for lane in range(width)]


def _decode_by_detection(data: bytes) -> DecodedText | None:
    steps = max(5, min(len(data) // _DETECTION_CHUNK, _MAX_DETECTION_STEPS))
    try:
        best = from_bytes(data, steps=steps, chunk_size=_DETECTION_CHUNK).best()
    except Exception:  # the detector failing on odd bytes means: not text we can read
        return None
    if best is None:
        return None
    if not is_multi_byte_encoding(best.encoding):
        western = _as_western(data)
        if western is not None:
            return western
    encoding = best.encoding
    if encoding.startswith(("utf_16", "utf_32")) and not encoding.endswith(("_le", "_be")):
        encoding = _likelier_byte_order(data, encoding[:6])[0]
    try:
        return DecodedText(data.decode(encoding), encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _likelier_byte_order(data: bytes, family: str) -> tuple[str, int]:
    """The byte order that reads as text, and how many characters in it are unreadable.

    Read in the wrong order, ASCII becomes CJK from dozens of blocks and CJK becomes a spread
    of blocks with surrogates, controls and unassigned or private-use code points.
    """
    sample = data[:_PATTERN_SAMPLE]
    scores = {}
    for encoding in (f"{family}_le", f"{family}_be"):
        text = sample.decode(encoding, errors="replace")
        unreadable = text.count("\ufffd") + sum(
            1
            for char in text
            if unicodedata.category(char) in _UNREADABLE and char not in _TEXT_CONTROLS
        )
        blocks = len({ord(char) >> 8 for char in text})
        scores[encoding] = (blocks + 10 * unreadable, unreadable)
    best = min(scores, key=scores.__getitem__)
    return best, scores[best][1]


def _as_western(data: bytes) -> DecodedText | None:
    """windows-1252, when the bytes read as a Western European language in it.

    charset-normalizer ranks single-byte code pages poorly on short Western text (it picks
    cp1257 for French, hp_roman8 for Finnish), yet windows-1252 is by far the most common of
    them. Text in other scripts read as windows-1252 is mostly accented letters (Cyrillic) or
    has symbols inside words (Polish "Za¿ó³æ"), so those keep the detector's choice.
    """
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    letters = len(_LETTER.findall(text))
    accented = len(_NON_ASCII_LETTER.findall(text))
    if not letters or accented / letters > _MAX_ACCENTED_SHARE:
        return None
    if len(_SYMBOL_IN_WORD.findall(text)) > accented * _MAX_SYMBOL_IN_WORD_SHARE:
        return None
    return DecodedText(text, "cp1252")
