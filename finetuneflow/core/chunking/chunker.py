"""Token-based chunking: cut a document into overlapping pieces of at most `max_tokens` tokens.

The text is encoded once; cuts are chosen in token space, so the work is linear in the text.
Each chunk is then re-encoded once for its exact count (a byte-level BPE can merge differently at
a chunk's edges than inside the whole text) and shortened in the rare case it went over.

Guarantees (for any text and valid settings):
- `chunk.text == text[chunk.char_start:chunk.char_end]`; chunks are in text order.
- A chunk never starts or ends with whitespace (`str.isspace`) and is never empty; every other
  character of the text lies in at least one chunk.
- `chunk.token_count <= max_tokens`, unless a single character alone encodes to more tokens.
- The same input gives the same output.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from finetuneflow.core.chunking.boundaries import (
    BoundaryClassifier,
    add_legal_cuts,
    cut_range,
)
from finetuneflow.core.chunking.tokens import TokenCounter

MIN_MAX_TOKENS = 16
MAX_MAX_TOKENS = 131_072

# A chunk ends at the best boundary in its last END_WINDOW of tokens (a heading: HEADING_WINDOW).
END_WINDOW = 0.25
HEADING_WINDOW = 0.5
# The next chunk starts at the best boundary within +-START_TOLERANCE * overlap of end - overlap.
START_TOLERANCE = 0.25
# The text is encoded in pieces of about this many characters, split at whitespace: the
# tokenizer's cost per token grows with the length of one input (its byte-to-char offset map).
ENCODE_BLOCK_CHARS = 16_384


@dataclass(frozen=True)
class ChunkSettings:
    max_tokens: int = 512
    overlap_tokens: int = 50

    def validate(self) -> None:
        """Raise ValueError with a message for the user if the settings cannot work."""
        for label, value in (("size", self.max_tokens), ("overlap", self.overlap_tokens)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(
                    f"The chunk {label} must be a whole number of tokens, not {value!r}."
                )
        if not MIN_MAX_TOKENS <= self.max_tokens <= MAX_MAX_TOKENS:
            raise ValueError(
                f"The chunk size must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS} tokens "
                f"(it is {self.max_tokens})."
            )
        if self.overlap_tokens < 0:
            raise ValueError("The chunk overlap cannot be negative.")
        if self.overlap_tokens * 2 >= self.max_tokens:
            raise ValueError(
                f"The chunk overlap ({self.overlap_tokens} tokens) must be less than half the "
                f"chunk size ({self.max_tokens} tokens); lower the overlap or raise the size."
            )


@dataclass(frozen=True)
class TextChunk:
    ordinal: int
    text: str  # == source_text[char_start:char_end]
    char_start: int
    char_end: int
    token_count: int  # tokens of `text` alone, no special tokens


def chunk_text(
    text: str,
    counter: TokenCounter,
    settings: ChunkSettings,
    *,
    heading_offsets: Sequence[int] = (),
) -> list[TextChunk]:
    """Cut `text` into chunks; see the module docstring for what is guaranteed.

    Cuts prefer, in order: a heading (a character offset in `heading_offsets`; offsets that point
    at whitespace before the heading are fine), a paragraph break, a line break, a sentence end,
    whitespace, and last any token edge. The overlap never reaches back across a heading: after
    a chunk that ends at a heading, or with a heading in its overlap, the next chunk starts there.
    """
    settings.validate()
    if not text.strip():
        return []
    return _Chunker(text, counter, settings, heading_offsets).run()


class _Chunker:
    """One chunking run. Positions are cut indices (into cut_tokens / cut_chars)."""

    def __init__(
        self,
        text: str,
        counter: TokenCounter,
        settings: ChunkSettings,
        heading_offsets: Sequence[int],
    ) -> None:
        self.text = text
        self.counter = counter
        self.max_tokens = settings.max_tokens
        self.overlap = settings.overlap_tokens
        self.cut_tokens, self.cut_chars = _encode_cuts(text, counter)
        self.last_cut = len(self.cut_tokens) - 1
        self.boundaries = BoundaryClassifier(text, heading_offsets)
        self.heading_cuts = self._heading_cuts()
        self.end_window = max(1, int(self.max_tokens * END_WINDOW))
        self.heading_window = max(self.end_window, int(self.max_tokens * HEADING_WINDOW))
        self.start_tolerance = max(1, int(self.overlap * START_TOLERANCE))

    def run(self) -> list[TextChunk]:
        chunks: list[TextChunk] = []
        start, covered_char = 0, 0
        while True:
            # The first cut past the first character no chunk holds yet: every chunk adds text.
            first_new = bisect_right(self.cut_chars, self.boundaries.skip_space(covered_char))
            end = self._choose_end(start, first_new)
            end, chunk = self._make_chunk(start, end, first_new, len(chunks))
            chunks.append(chunk)
            covered_char = chunk.char_end
            if end == self.last_cut or self.boundaries.skip_space(covered_char) == len(self.text):
                return chunks
            start = self._choose_start(start, end, chunk)

    def _choose_end(self, start: int, first_new: int, limit: int | None = None) -> int:
        """Cut where the chunk starting at cut `start` should end, at a token index <= `limit`.

        `limit` defaults to the start plus max_tokens. The end is never before `first_new`; if no
        cut lies in [first_new, limit], the result is the first cut after it.
        """
        if limit is None:
            limit = self.cut_tokens[start] + self.max_tokens
            if limit >= self.cut_tokens[-1]:
                return self.last_cut
        headings = self._headings_in(limit - self.heading_window, limit)
        if headings and headings[-1] >= first_new:
            return headings[-1]
        window = cut_range(self.cut_tokens, limit - self.end_window, limit)
        candidates = range(max(first_new, window.start), window.stop)
        if candidates:
            kinds = self.boundaries.kinds(self.cut_chars[candidates.start : candidates.stop])
            return max(zip(kinds, candidates, strict=True))[1]  # best kind, then the latest
        # No cut in the window (one character spans it): the latest cut that fits, or the next.
        return max(first_new, window.start - 1)

    def _choose_start(self, start: int, end: int, chunk: TextChunk) -> int:
        """Cut where the chunk after `chunk` (cuts [start, end]) starts.

        The overlap is counted back from the chunk's last non-space character, and the next chunk
        starts past this one's first, so that no two chunks start at the same character.
        """
        if self.overlap == 0:
            return end
        floor = max(start + 1, bisect_right(self.cut_chars, chunk.char_start))
        text_end = bisect_right(self.cut_chars, chunk.char_end) - 1
        target = self.cut_tokens[text_end] - self.overlap
        headings = self._headings_in(target - self.start_tolerance, self.cut_tokens[end])
        if headings and headings[-1] >= floor:
            return headings[-1]  # never reach back across a heading
        tolerance = self.start_tolerance
        near = cut_range(self.cut_tokens, target - tolerance, target + tolerance)
        candidates = range(max(floor, near.start), min(near.stop, end))
        if candidates:
            kinds = self.boundaries.kinds(self.cut_chars[candidates.start : candidates.stop])
            distances = [-abs(self.cut_tokens[cut] - target) for cut in candidates]
            return max(zip(kinds, distances, candidates, strict=True))[2]  # best, then nearest
        # No cut near the target (long multi-token characters): the closest one before the end.
        before = bisect_right(self.cut_tokens, target)
        nearest = [c for c in (before - 1, before) if floor <= c < end]
        return min(nearest, key=lambda c: abs(self.cut_tokens[c] - target), default=end)

    def _make_chunk(
        self, start: int, end: int, first_new: int, ordinal: int
    ) -> tuple[int, TextChunk]:
        """The chunk for cuts [start, end], made to fit its own count; and its final end.

        A chunk re-encoded alone can take a few more tokens than its slice of the whole text (its
        first word lost the leading space it was merged with). It is then cut again as if its
        limit were that many tokens lower or, if that would add nothing new, its overlap shrinks.
        """
        while True:
            char_start, char_end = self._trimmed_span(start, end)
            piece = self.text[char_start:char_end]
            count = self.counter.count(piece)
            excess = count - self.max_tokens
            if excess > 0:
                shorter = self._choose_end(start, first_new, self.cut_tokens[end] - excess)
                if first_new <= shorter < end:
                    end = shorter
                    continue
                later = min(
                    bisect_left(self.cut_tokens, self.cut_tokens[start] + excess), first_new - 1
                )
                if later > start:
                    start = later
                    continue
            # It fits, or one character alone is over the limit.
            return end, TextChunk(ordinal, piece, char_start, char_end, count)

    def _trimmed_span(self, start: int, end: int) -> tuple[int, int]:
        """Character span of cuts [start, end] without leading and trailing whitespace."""
        char_start, char_end = self.cut_chars[start], self.cut_chars[end]
        piece = self.text[char_start:char_end]
        stripped = piece.lstrip()
        char_start += len(piece) - len(stripped)
        return char_start, char_start + len(stripped.rstrip())

    def _heading_cuts(self) -> list[int]:
        """Sorted cuts right before a heading (only whitespace in between)."""
        cuts = []
        for heading in self.boundaries.headings:
            cut = bisect_right(self.cut_chars, heading) - 1
            if cut > 0 and self.boundaries.skip_space(self.cut_chars[cut]) == heading:
                cuts.append(cut)
        return cuts

    def _headings_in(self, low: int, high: int) -> list[int]:
        """Heading cuts whose token index is in [low, high]."""
        cuts = cut_range(self.cut_tokens, low, high)
        first = bisect_left(self.heading_cuts, cuts.start)
        return self.heading_cuts[first : bisect_left(self.heading_cuts, cuts.stop)]


def _encode_cuts(text: str, counter: TokenCounter) -> tuple[array[int], array[int]]:
    """Encode `text` once, piece by piece; return the legal cuts (token indices, char positions).

    The first cut is (0, 0) and the last (token count, len(text)). Token indices are positions in
    the concatenated encodings of the pieces, which differ from one whole-text encoding by at most
    a token or two at each seam; chunk counts are exact because each chunk is re-encoded.
    Compact arrays: a list would cost ~36 bytes per token instead of 4.
    """
    tokens, chars = array("i", [0]), array("i", [0])
    n_tokens = 0
    start = 0
    while start < len(text):
        end = _piece_end(text, start)
        offsets = counter.offsets(text[start:end])
        add_legal_cuts(offsets, tokens, chars, token_shift=n_tokens, char_shift=start)
        n_tokens += len(offsets)
        tokens.append(n_tokens)  # a seam between pieces is a legal cut too
        chars.append(end)
        start = end
    return tokens, chars


def _piece_end(text: str, start: int) -> int:
    """End of the piece starting at `start`: before a whitespace run in its second half if any."""
    end = start + ENCODE_BLOCK_CHARS
    if end >= len(text):
        return len(text)
    low = start + ENCODE_BLOCK_CHARS // 2
    split = max(text.rfind("\n", low, end), text.rfind(" ", low, end))
    if split < 0:
        return end  # no space (CJK, one huge word): any character edge will do
    while split > low and text[split - 1].isspace():
        split -= 1
    return split
