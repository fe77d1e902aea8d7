"""Reading a dataset file into import batches: in this process, or in a child for a large file.

Reading and hashing a million short lines takes about as long as storing them (12 s and 10 s on
one core). A child reads and hashes the next batch while this process stores the last one, on a
second core: the import took 24 s in one process, 14-15 s so. (A thread does not overlap them:
storing ran twice as slow beside it, 21.5 s in all.)

Protocol: the parent starts `finetuneflow read-dataset` and writes one JSON `ReadRequest` line
on its stdin. The child writes on stdout a JSON line per event: `format` first, then each batch
as a `batch` line followed by its `parts` (their sizes in bytes are listed in the line), then
`end` or `error`. Reading has no side effects, so the parent simply ends the child when it
stops early (cancel, Ctrl-C, a failed write). The child ignores Ctrl-C, which the parent
handles; if the parent is killed, the child's next write fails and it exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from finetuneflow.core.dataset.formats import CsvColumns, ImportedRow, iter_dataset
from finetuneflow.core.dataset.jsonl import truncate
from finetuneflow.services.child_process import child_environment, own_command
from finetuneflow.services.errors import UserError
from finetuneflow.storage.import_batch import ImportBatch, ImportBatchBuilder, ImportCounts

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

READER_COMMAND = "read-dataset"
READER_LOG = "dataset-reader.log"  # what a child prints on stderr (a crash)
# A smaller file is read in this process: it makes one or two batches, so there is little to
# overlap, and starting the child takes about 0.3 s.
CHILD_MIN_BYTES = 16 * 1024 * 1024
# Rows per transaction: a stop keeps every batch stored. Larger batches write each page of the
# hash-key index (random keys) fewer times: SQLite took 10 s to store a million short rows in
# batches of 100,000, 13 s in batches of 50,000 and 18 s in batches of 25,000. A batch waiting
# to be written is held as encoded text, about 25 MB.
IMPORT_BATCH = 100_000
# ...and at most this many bytes of encoded rows (a short row takes about 220), so that a batch of
# long examples stays small (30,000 examples of 8,000 characters in one batch peaked at 714 MB,
# in batches of this size at 378 MB), text that encodes large too (a quote takes four bytes).
IMPORT_BATCH_BYTES = 24_000_000


@dataclass(frozen=True)
class ReadRequest:
    """What to read and the limits that apply: plain values, to send to the child as JSON."""

    path: str
    format: str
    system_prompt: str | None
    csv_columns: dict[str, str | None] | None  # a CsvColumns as a dict
    max_line_bytes: int
    longest: int  # characters of the longest example kept; a longer one is rejected
    chars_per_token: int  # what `longest` is made of, for its reason


def read_batches(request: ReadRequest) -> tuple[str, Iterator[ImportBatch]]:
    """The file's format and its rows in batches; raises ValueError for a file that is not a
    dataset (and, from the batches, for one that turns out broken further on)."""
    columns = CsvColumns(**request.csv_columns) if request.csv_columns else None
    found, rows = iter_dataset(Path(request.path), format=request.format,
                               system_prompt=request.system_prompt, csv_columns=columns,
                               max_line_bytes=request.max_line_bytes)
    return found, _batches(rows, request.longest, request.chars_per_token)


@contextmanager
def reading(request: ReadRequest, log_path: Path) -> Iterator[tuple[str, Iterator[ImportBatch]]]:
    """`read_batches`, in a child process when the file is large enough to gain from one. The
    child ends when the block does, however it ends."""
    if Path(request.path).stat().st_size < CHILD_MIN_BYTES:
        yield read_batches(request)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as errors:
        child = subprocess.Popen(own_command(READER_COMMAND), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=errors,
                                 env=child_environment())
    try:
        assert child.stdin is not None
        try:
            child.stdin.write(orjson.dumps(asdict(request)) + b"\n")
            child.stdin.close()
        except BrokenPipeError:  # it ended at once
            raise _ended_early(child, log_path) from None
        found = _next_event(child, log_path)["format"]
        yield found, _received_batches(child, log_path)
    finally:  # also when the import stops early: the child has nothing to finish
        _end(child)


def _batches(rows: Iterable[ImportedRow], longest: int,
             chars_per_token: int) -> Iterator[ImportBatch]:
    """The rows in batches of IMPORT_BATCH, fewer when they reach IMPORT_BATCH_BYTES encoded.
    An example longer than `longest` characters becomes a rejected row with that reason:
    training would cut it anyway, and a giant one must not reach the database."""
    batch = ImportBatchBuilder()
    for row in rows:
        if row.messages is not None:
            length = sum([len(turn["content"]) for turn in row.messages])
            if length > longest:
                reason = (f"an example of {length:,} characters, longer than {longest:,} "
                          f"({chars_per_token}× the training's max length in tokens)")
                row = ImportedRow(row.line, None, reason, truncate(json.dumps(row.messages)))
        batch.add(row)
        if batch.rows == IMPORT_BATCH or batch.size >= IMPORT_BATCH_BYTES:
            yield batch.build()
            batch = ImportBatchBuilder()
    if batch.rows:
        yield batch.build()


# --- parent side ------------------------------------------------------------------------------

def _received_batches(child: subprocess.Popen[bytes], log_path: Path) -> Iterator[ImportBatch]:
    assert child.stdout is not None
    while (event := _next_event(child, log_path))["event"] == "batch":
        parts = [child.stdout.read(size) for size in event["parts"]]
        if [len(part) for part in parts] != event["parts"]:  # cut off: the child died
            raise _ended_early(child, log_path)
        yield _batch_of(event, parts)


def _next_event(child: subprocess.Popen[bytes], log_path: Path) -> dict[str, Any]:
    """The child's next event; its `error` raised as the error it was, its early end as a
    UserError."""
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.endswith(b"\n"):  # nothing, or cut off: the child died
        raise _ended_early(child, log_path)
    event: dict[str, Any] = orjson.loads(line)
    if event["event"] == "error":
        if event["kind"] == "value":
            raise ValueError(event["message"])
        raise UserError(f"Reading the dataset failed ({event['message']}). The batches "
                        f"stored so far are kept. Details: {log_path}")
    return event


def _ended_early(child: subprocess.Popen[bytes], log_path: Path) -> UserError:
    return UserError(f"Reading the dataset stopped unexpectedly (the reader process ended with "
                     f"code {child.wait()}). The batches stored so far are kept; import the "
                     f"file again to add the rest. Details: {log_path}")


def _end(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait()
    if child.stdout is not None:
        child.stdout.close()


def _header(batch: ImportBatch) -> dict[str, Any]:
    counts = batch.counts
    return {"event": "batch", "parts": [len(part) for part in batch.parts], "keys": batch.keys,
            "imported": counts.imported, "duplicates": counts.duplicates,
            "rejected": [(row.line, row.error, row.raw) for row in counts.rejected],
            "rejected_keys": batch.rejected_keys, "last_line": batch.last_line}


def _batch_of(header: dict[str, Any], parts: list[bytes]) -> ImportBatch:
    rejected = [ImportedRow(line, None, error, raw) for line, error, raw in header["rejected"]]
    counts = ImportCounts(header["imported"], rejected, header["duplicates"])
    return ImportBatch(parts, header["keys"], counts, header["rejected_keys"],
                       header["last_line"])


# --- child side -------------------------------------------------------------------------------

def main() -> int:
    """`finetuneflow read-dataset`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends us
    return serve(sys.stdin.buffer, sys.stdout.buffer)


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Read the request, then send the format and the batches."""
    try:
        request = ReadRequest(**orjson.loads(stdin.readline()))
    except (ValueError, TypeError):
        print("finetuneflow read-dataset is started by the app during a dataset import: it "
              "reads one JSON request on stdin.", file=sys.stderr)
        return 2
    try:
        _send_batches(request, stdout)
    except BrokenPipeError:  # the parent is gone or stopped reading: nobody to tell
        # Not even at exit, when flushing what is left would fail again, into the log.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
    return 0


def _send_batches(request: ReadRequest, stdout: IO[bytes]) -> None:
    try:
        found, batches = read_batches(request)
        _send(stdout, {"event": "format", "format": found})
        for batch in batches:
            _send(stdout, _header(batch), *batch.parts)
    except ValueError as error:  # the file is not a dataset, or broken further on
        _send(stdout, {"event": "error", "kind": "value", "message": str(error)})
    except BrokenPipeError:
        raise
    except Exception as error:  # unreadable, gone, out of memory: the details go to the log
        traceback.print_exc()
        _send(stdout, {"event": "error", "kind": "failed",
                       "message": f"{type(error).__name__}: {error}"})
    else:
        _send(stdout, {"event": "end"})


def _send(stdout: IO[bytes], event: dict[str, Any], *parts: bytes) -> None:
    stdout.write(orjson.dumps(event) + b"\n")
    for part in parts:
        stdout.write(part)
    stdout.flush()
