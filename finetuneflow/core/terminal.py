"""Text from a model or a server, made safe to print on a terminal.

A model (or a hostile server) can answer with escape sequences that recolour, retitle or clear
the terminal, move the cursor over earlier lines, or with bidi controls that reorder what is
shown. Each such character is written as its visible escape (\\x1b, \\u202e), so nothing is
hidden and nothing acts; newlines and tabs stay as they are. Done piece by piece, it is as safe
for a streamed answer as for a whole one: an escape sequence split over two pieces still has its
ESC shown, never sent.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls, and the bidi embeddings, overrides and
# isolates (U+202A–U+202E, U+2066–U+2069).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character but newline and tab written as a visible escape."""
    return _UNSAFE.sub(_escape, text)
