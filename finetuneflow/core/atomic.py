"""Write a file completely or not at all: a temporary file beside it, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from finetuneflow.core.progress import CancelToken, ProgressSink, ignore_progress

CHUNK = 1 << 20


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_copy(source: Path, destination: Path, *, progress: ProgressSink = ignore_progress,
                cancel: CancelToken | None = None) -> None:
    """Copy a file that may be gigabytes: progress per percent, and Cancelled (or a crash)
    leaves nothing under the destination's name (an older file there stays as it was)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    total = source.stat().st_size or 1
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                                         suffix=".partial")
    done, reported = 0, -1
    try:
        with source.open("rb") as reader, os.fdopen(handle, "wb") as writer:
            while chunk := reader.read(CHUNK):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                writer.write(chunk)
                done += len(chunk)
                if (percent := 100 * done // total) > reported:
                    reported = percent
                    progress(done / total, f"Copying {source.name}")
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
