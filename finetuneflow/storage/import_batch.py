"""An import's batch as the database takes it: rows hashed and encoded as they are read.

Light on purpose (no SQLAlchemy): the reader process (services/dataset_reader.py) builds the
batches, and starting it must stay quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from finetuneflow.core.dataset.keys import hash_key
from finetuneflow.core.generation.quality import content_hash
from finetuneflow.core.statuses import ExampleStatus

if TYPE_CHECKING:
    from finetuneflow.core.dataset.formats import ImportedRow

Messages = list[dict[str, str]]
MAX_REASON = 200  # characters of a stored reject reason
_ACCEPTED, _REJECTED = ExampleStatus.ACCEPTED.value, ExampleStatus.REJECTED.value


@dataclass
class ImportCounts:
    imported: int  # new kept rows
    rejected: list[ImportedRow]  # bad lines stored as rejected rows
    duplicates: int  # lines already in the project (bad ones too), not stored again


# A batch is written in parts of about this many bytes, one statement each: SQLite holds about
# three times a statement's JSON while it runs (a 24 MB batch in one statement took 107 MB, in
# parts of 6 MB 52 MB, as fast; parts of 2.4 MB took a tenth longer).
IMPORT_PART_BYTES = 6_000_000


@dataclass(frozen=True)
class ImportBatch:
    """Rows of an import ready for `add_imported`, made by `ImportBatchBuilder` outside the
    write transaction: the rows encoded as IMPORT_INSERT takes them, and what storing them adds
    if the project holds none of them yet (the usual case)."""

    # IMPORT_INSERT's JSON lists, in UTF-8: [[messages as JSON, status, reason, hash, key], ...]
    parts: list[bytes]
    keys: list[int]  # the hash key of each row in `parts`, in order
    counts: ImportCounts  # what storing all of `parts` adds
    rejected_keys: list[int]  # the hash key of each row of `counts.rejected`
    last_line: int  # the file's line of the batch's last row

    def without(self, known: set[int]) -> ImportBatch:
        """The batch less the rows whose hash key the project holds: duplicates too."""
        entries = [entry for part in self.parts for entry in orjson.loads(part)]
        kept = [entry for entry in entries if entry[4] not in known]
        rejected = [(row, key) for row, key in zip(self.counts.rejected, self.rejected_keys,
                                                   strict=True) if key not in known]
        counts = ImportCounts(sum(entry[1] == _ACCEPTED for entry in kept),
                              [row for row, _ in rejected],
                              self.counts.duplicates + len(entries) - len(kept))
        parts = _Parts()
        for entry in kept:
            parts.add(orjson.dumps(entry))
        return ImportBatch(parts.finish(), [entry[4] for entry in kept], counts,
                           [key for _, key in rejected], self.last_line)


class _Parts:
    """Encoded rows joined into JSON lists of about IMPORT_PART_BYTES each."""

    def __init__(self) -> None:
        self.size = 0  # bytes of the finished parts and the open one
        self._done: list[bytes] = []
        # One growing buffer: each of orjson's results sits in a 4 KB block that, kept, would
        # hold the whole block (a batch of 100,000 short rows took 400 MB).
        self._open = bytearray()

    def add(self, entry: bytes) -> None:
        self._open += b"," if self._open else b"["
        self._open += entry
        self.size += len(entry) + 1
        if len(self._open) >= IMPORT_PART_BYTES:
            self._close()

    def finish(self) -> list[bytes]:
        if self._open:
            self._close()
        return self._done

    def _close(self) -> None:
        self._open += b"]"
        self.size += 1
        self._done.append(bytes(self._open))
        self._open = bytearray()


class ImportBatchBuilder:
    """Makes an `ImportBatch` a row at a time: each row is hashed and encoded as it comes,
    and only the encoded text is held (a fifth of the memory of its parsed turns). A row whose
    example a good row earlier in the batch has is a duplicate, not stored."""

    def __init__(self) -> None:
        self.rows = 0  # rows added, duplicates included
        self._parts = _Parts()
        self._keys: list[int] = []
        self._good: set[int] = set()
        self._rejected_keys: list[int] = []
        self._counts = ImportCounts(0, [], 0)
        self._last_line = 0

    def add(self, row: ImportedRow) -> None:
        messages = _turns_of(row)
        digest = content_hash(messages)
        key = hash_key(digest)
        self.rows += 1
        self._last_line = row.line
        if key in self._good:
            self._counts.duplicates += 1
            return
        if row.error is None:
            # Only good lines count as seen: two equal bad lines in one file are both stored,
            # with their own line numbers.
            self._good.add(key)
            self._counts.imported += 1
            status, reason = _ACCEPTED, None
        else:
            self._counts.rejected.append(row)
            self._rejected_keys.append(key)
            status, reason = _REJECTED, f"line {row.line}: {row.error}"[:MAX_REASON]
        self._parts.add(orjson.dumps((orjson.dumps(messages).decode(), status, reason, digest,
                                      key)))
        self._keys.append(key)

    @property
    def size(self) -> int:
        """Bytes of the encoded rows so far: what the batch holds while it is written."""
        return self._parts.size

    def build(self) -> ImportBatch:
        return ImportBatch(self._parts.finish(), self._keys, self._counts, self._rejected_keys,
                           self._last_line)


def _turns_of(row: ImportedRow) -> Messages:
    # The raw line is a bad row's only turn, so the person can see and fix it.
    return row.messages if row.messages is not None else [{"role": "user", "content": row.raw}]
