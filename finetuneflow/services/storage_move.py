"""Moving the home folder (database, projects, logs) to another place, safely.

Copy, then verify, then switch: every file is hashed as it is read and again once written, the
copied database must pass SQLite's integrity check, and only then is the new place recorded
(where start-up looks) and used. Anything that goes wrong before the switch removes the copy
and leaves the app on the old folder, which is never modified; after the switch it is kept
until the person deletes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuneflow.core.atomic import atomic_write_text
from finetuneflow.core.progress import CancelToken, ProgressSink, ignore_progress
from finetuneflow.services.errors import UserError
from finetuneflow.services.ingest import sha256_of
from finetuneflow.services.jobs import JobService
from finetuneflow.storage.home import Home, record_home

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

BLOCK = 1 << 20
# Run files name the data they use by absolute path: they are re-pointed at the new folder.
RUN_FILES = "storage/*/artifacts/run-*/*job.json"


@dataclass(frozen=True)
class MoveResult:
    old: Path
    new: Path
    files: int
    bytes: int


def move_home(context: AppContext, target: Path, *, progress: ProgressSink = ignore_progress,
              cancel: CancelToken | None = None) -> MoveResult:
    """Copy the home folder into `target` (empty or new), verify it, then use it from now on."""
    old = context.home.root.resolve()
    target = _checked_target(old, target)
    if running := JobService(context).alive():
        raise UserError(f"A {running[0].kind.value} job is running: wait for it to finish (or "
                        "stop it) before moving the data.")
    context.release_database()
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        files, size = _copy_verified(old, target, progress, cancel)
        _check_database(Home(target).db_path)
        _repoint_run_files(target, [str(context.home.root), str(old)])
    except BaseException:
        _remove_copy(target, created)
        raise
    record_home(target)
    context.switch_home(Home(target))
    progress(1.0, f"Moved {files} files to {target}")
    return MoveResult(old, target, files, size)


def _checked_target(old: Path, target: Path) -> Path:
    target = target.expanduser().resolve()
    if target == old or old in target.parents or target in old.parents:
        raise UserError("Choose a folder outside the current data folder (and not one that "
                        "contains it).")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target} is not an empty folder: choose an empty or new folder.")
    if not target.parent.is_dir():
        raise UserError(f"{target.parent} does not exist.")
    return target


def _copy_verified(old: Path, target: Path, progress: ProgressSink,
                   cancel: CancelToken | None) -> tuple[int, int]:
    # After the checkpoint the database file holds everything; a reader elsewhere in the app
    # may still open (and later remove) its WAL files, which a copy must not depend on.
    database = Home(old).db_path
    transient = {database.with_name(f"{database.name}-{end}") for end in ("wal", "shm")}
    files = sorted(path for path in old.rglob("*") if path.is_file() and path not in transient)
    total = sum(path.stat().st_size for path in files) or 1
    done = 0
    for path in files:
        if cancel is not None:
            cancel.raise_if_cancelled()
        destination = target / path.relative_to(old)
        progress(done / total, f"Copying {path.relative_to(old)}")
        written = _copy_and_hash(path, destination)
        if sha256_of(destination) != written:
            raise UserError(f"The copy of {path.name} differs from the original (a failing "
                            "disk?): nothing was moved.")
        done += destination.stat().st_size
    return len(files), done


def _copy_and_hash(source: Path, destination: Path) -> str:
    """Copy a file; return the hash of the bytes read, to compare with what was written."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with source.open("rb") as reader, destination.open("xb") as writer:
            while block := reader.read(BLOCK):
                digest.update(block)
                writer.write(block)
            writer.flush()
            os.fsync(writer.fileno())
    except OSError as error:
        raise UserError(f"Could not copy {source.name}: {error.strerror}. Nothing was moved; "
                        "check the free space and permissions of the new folder.") from None
    shutil.copystat(source, destination)
    return digest.hexdigest()


def _check_database(path: Path) -> None:
    if not path.exists():
        return
    connection = sqlite3.connect(path)
    try:
        result = connection.execute("PRAGMA integrity_check").fetchone()
    finally:
        connection.close()
    if result is None or result[0] != "ok":
        raise UserError("The copied database failed its integrity check: nothing was moved.")


def _repoint_run_files(target: Path, old_prefixes: list[str]) -> None:
    for path in target.glob(RUN_FILES):
        data = json.loads(path.read_text(encoding="utf-8"))
        atomic_write_text(path, json.dumps(_repoint(data, old_prefixes, str(target)), indent=2))


def _repoint(value: Any, old_prefixes: list[str], new: str) -> Any:
    if isinstance(value, dict):
        return {key: _repoint(item, old_prefixes, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_repoint(item, old_prefixes, new) for item in value]
    if isinstance(value, str):
        for old in old_prefixes:
            if value == old or value.startswith(old + os.sep):
                return new + value[len(old):]
    return value


def _remove_copy(target: Path, created: bool) -> None:
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():  # the folder was the person's: empty it, keep it
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
