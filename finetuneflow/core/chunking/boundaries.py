"""Where a text may be cut, and how good each cut is.

A cut is only legal between two tokens whose character spans do not share a character: a
byte-level BPE splits a multibyte character into several tokens with the same offsets, and a cut
between them would split the character. Each legal cut gets a `Boundary` kind from the characters
around it; the chunker prefers the best kind near its target.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from enum import IntEnum


class Boundary(IntEnum):
    """Kinds of cut, worst to best."""

    TOKEN = 0
    SPACE = 1
    SENTENCE = 2
    LINE = 3
    PARAGRAPH = 4
    HEADING = 5


# Sentence ends that count only before a space: Latin, ellipsis, Arabic ؟, Urdu ۔, doubled marks.
_SPACED_STOPS = frozenset(".!?…؟۔‼⁇⁈⁉")
# Sentence ends that need no space after them: CJK full-width and half-width, Devanagari danda.
_UNSPACED_STOPS = frozenset("。！？｡．।॥")
# Closing quotes and brackets that may follow a sentence end: `He said "Stop."`
_CLOSERS = frozenset("\"')]}»”’」』）】〉》")
_MAX_CLOSERS = 2

_WHITESPACE = re.compile(r"\s+")


def add_legal_cuts(
    offsets: Sequence[tuple[int, int]],
    tokens: array[int],
    chars: array[int],
    *,
    token_shift: int,
    char_shift: int,
) -> None:
    """Append the legal cuts strictly inside one encoded piece of text to `tokens` / `chars`.

    `offsets` are the piece's token offsets; the piece starts at token `token_shift` and character
    `char_shift` of the whole text. Characters no token covers (some tokenizers drop whitespace)
    stay with the text before them.
    """
    reach = 0  # furthest character any earlier token of the piece touches
    for index, (start, end) in enumerate(offsets):
        if index and reach <= start:
            tokens.append(token_shift + index)
            chars.append(char_shift + start)
        reach = max(reach, end)


class BoundaryClassifier:
    """Classifies cut positions of one text; linear set-up, O(log n) per position."""

    def __init__(self, text: str, heading_offsets: Sequence[int] = ()) -> None:
        self._text = text
        self._run_starts = array("i")  # whitespace runs, as [start, end) pairs
        self._run_ends = array("i")
        for match in _WHITESPACE.finditer(text):
            self._run_starts.append(match.start())
            self._run_ends.append(match.end())
        self._newlines: dict[int, int] = {}  # run index -> newline count, computed on demand
        self._headings = {self.skip_space(h) for h in heading_offsets if 0 < h < len(text)}

    @property
    def headings(self) -> list[int]:
        """Heading starts (first non-space character), sorted."""
        return sorted(self._headings)

    def kinds(self, positions: Sequence[int]) -> list[Boundary]:
        """How good a cut is at each of `positions` (increasing, inside the text).

        One binary search, then a walk along the whitespace runs: O(1) amortised per position.
        """
        if not positions:
            return []
        starts, ends = self._run_starts, self._run_ends
        run = max(0, bisect_right(starts, positions[0]) - 1)
        result = []
        for pos in positions:
            while run + 1 < len(starts) and starts[run + 1] <= pos:
                run += 1
            touches_run = run < len(starts) and starts[run] <= pos <= ends[run]
            result.append(self._kind(pos, run if touches_run else -1))
        return result

    def _kind(self, pos: int, run: int) -> Boundary:
        """The kind of a cut at `pos`, given the whitespace run it touches (or -1)."""
        before, after = (self._run_starts[run], self._run_ends[run]) if run >= 0 else (pos, pos)
        if after in self._headings:
            return Boundary.HEADING
        newlines = self._newline_count(run) if run >= 0 else 0
        if newlines >= 2:
            return Boundary.PARAGRAPH
        if newlines == 1:
            return Boundary.LINE
        if self._ends_sentence(before, spaced=after > before):
            return Boundary.SENTENCE
        return Boundary.SPACE if after > before else Boundary.TOKEN

    def skip_space(self, pos: int) -> int:
        """`pos`, moved past the whitespace run it is in or starts."""
        run = self._run_at(pos)
        return self._run_ends[run] if run >= 0 else pos

    def _run_at(self, pos: int) -> int:
        """Index of the whitespace run with start <= pos <= end, or -1."""
        run = bisect_right(self._run_starts, pos) - 1
        if run >= 0 and pos <= self._run_ends[run]:
            return run
        return -1

    def _newline_count(self, run: int) -> int:
        count = self._newlines.get(run)
        if count is None:
            count = self._text.count("\n", self._run_starts[run], self._run_ends[run])
            self._newlines[run] = count
        return count

    def _ends_sentence(self, end: int, *, spaced: bool) -> bool:
        """Whether the non-space text ending at `end` ends a sentence."""
        index = end - 1
        while index >= 0 and end - index <= _MAX_CLOSERS and self._text[index] in _CLOSERS:
            index -= 1
        if index < 0:
            return False
        char = self._text[index]
        return char in _UNSPACED_STOPS or (spaced and char in _SPACED_STOPS)


def cut_range(cut_tokens: Sequence[int], low: int, high: int) -> range:
    """Indices into `cut_tokens` (sorted) of the cuts with low <= token index <= high."""
    return range(bisect_left(cut_tokens, low), bisect_right(cut_tokens, high))
