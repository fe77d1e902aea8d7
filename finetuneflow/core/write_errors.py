"""Writes that fail for lack of space or of permission: one message for every write path (the
database, copies of documents, dataset files, checkpoints, exports), naming the folder and its
free space, instead of a traceback."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

from finetuneflow.core.units import format_bytes

_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", -1))
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)
# Libraries that wrap the OSError in their own types say so in words: SQLite, torch.save,
# safetensors.
NEARLY_FULL = 1024 * 1024
_NO_SPACE_WORDS = ("No space left on device", "database or disk is full", "StorageFull",
                   "Disk quota exceeded", "file write failed")


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """The error and those it was raised from (SQLAlchemy keeps the driver's in `orig`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = current.__cause__ or current.__context__ or (
            orig if isinstance(orig, BaseException) else None)


def is_disk_full(error: BaseException) -> bool:
    return any((isinstance(link, OSError) and link.errno in _NO_SPACE)
               or any(words in str(link) for words in _NO_SPACE_WORDS)
               for link in error_chain(error))


def _not_allowed(error: BaseException) -> OSError | None:
    return next((link for link in error_chain(error)
                 if isinstance(link, OSError) and link.errno in _NOT_ALLOWED), None)


def write_problem(error: BaseException, folder: Path) -> str | None:
    """One line for a write that failed for lack of space or permission under `folder`; None
    for any other error."""
    if is_disk_full(error) or (_io_error(error) and 0 <= _free_bytes(folder) < NEARLY_FULL):
        return (f"The disk that holds {folder} is full ({_free(folder)} free): free some space "
                "or move the data folder (Settings), then try again. What was done is kept.")
    denied = _not_allowed(error)
    if denied is not None:
        where = denied.filename or folder
        return (f"FineTuneFlow may not write to {where} ({denied.strerror}): check the "
                "folder's permissions, or move the data folder (Settings), then try again.")
    return None


def _io_error(error: BaseException) -> bool:
    # SQLite reports a full disk under its shared-memory file as a plain "disk I/O error".
    return any("disk I/O error" in str(link) for link in error_chain(error))


def _free_bytes(folder: Path) -> int:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    return -1 if existing is None else shutil.disk_usage(existing).free


def _free(folder: Path) -> str:
    free = _free_bytes(folder)
    return "unknown space" if free < 0 else format_bytes(free)
