"""The export's zip: every file of a folder plus MANIFEST.sha256, complete or absent.

The zip is written under a temporary name beside the destination and renamed when it is
complete, so a killed export never leaves a truncated zip under the final name (and an older
zip there stays intact until the new one replaces it). Each file is hashed while it is copied
in, so a multi-gigabyte model is read once. The manifest uses `sha256sum` format, relative to
the zip's top folder: `sha256sum -c MANIFEST.sha256` checks an unpacked copy.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from finetuneflow.core.progress import CancelToken, ProgressSink, ignore_progress

MANIFEST = "MANIFEST.sha256"
CHUNK = 1 << 20
# Weights do not compress; deflating gigabytes of them only costs time.
STORED_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".zip", ".png")


@dataclass(frozen=True)
class ArchiveEntry:
    path: str  # relative to the zip's top folder, with forward slashes
    size: int
    sha256: str


def manifest_text(entries: list[ArchiveEntry]) -> str:
    return "".join(f"{entry.sha256}  {entry.path}\n" for entry in entries)


def folder_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def write_archive(folder: Path, destination: Path, *, top: str,
                  progress: ProgressSink = ignore_progress,
                  cancel: CancelToken | None = None) -> list[ArchiveEntry]:
    """Zip `folder` as `top/…` with `top/MANIFEST.sha256`; Cancelled leaves nothing behind.

    A partial zip left by a killed earlier attempt at the same destination is removed first.
    """
    files = folder_files(folder)
    total = sum(path.stat().st_size for path in files) or 1
    destination.parent.mkdir(parents=True, exist_ok=True)
    for stale in destination.parent.glob(f".{destination.name}.*.partial"):
        stale.unlink(missing_ok=True)  # left by a killed export; can be gigabytes
    handle, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                                    suffix=".partial")
    os.close(handle)
    temporary = Path(name)
    entries: list[ArchiveEntry] = []
    tracker = _Progress(progress, total)
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for path in files:
                relative = path.relative_to(folder).as_posix()
                tracker.file(relative)
                entries.append(_add(archive, path, relative, top, tracker, cancel))
            archive.writestr(f"{top}/{MANIFEST}", manifest_text(entries))
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    progress(1.0, f"Wrote {destination.name}")
    return entries


def _add(archive: zipfile.ZipFile, path: Path, relative: str, top: str, tracker: _Progress,
         cancel: CancelToken | None) -> ArchiveEntry:
    info = zipfile.ZipInfo.from_file(path, f"{top}/{relative}")
    stored = path.suffix.lower() in STORED_SUFFIXES
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    digest = hashlib.sha256()
    with path.open("rb") as source, archive.open(info, "w") as target:
        while chunk := source.read(CHUNK):
            if cancel is not None:
                cancel.raise_if_cancelled()
            digest.update(chunk)
            target.write(chunk)
            tracker.advance(len(chunk))
    return ArchiveEntry(relative, info.file_size, digest.hexdigest())


class _Progress:
    """Reports the start and every whole percent, not every file or chunk: a CLI prints each
    report, and an export can hold many small files or one of many gigabytes."""

    def __init__(self, sink: ProgressSink, total: int) -> None:
        self._sink = sink
        self._total = total
        self._done = 0
        self._reported = -1
        self._name = ""

    def file(self, name: str) -> None:
        self._name = name
        if self._reported < 0:
            self._report()

    def advance(self, count: int) -> None:
        self._done += count
        if int(100 * self._done / self._total) > self._reported:
            self._report()

    def _report(self) -> None:
        fraction = min(self._done / self._total, 1.0)
        self._reported = int(100 * fraction)
        self._sink(fraction, f"Zipping {self._name}")


def verify_archive(path: Path) -> list[str]:
    """What is wrong with an export zip: missing, extra or altered files (empty: all good)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _problems(archive)
    except (OSError, zipfile.BadZipFile) as error:
        return [f"{path.name} cannot be read as a zip ({error})"]


def _problems(archive: zipfile.ZipFile) -> list[str]:
    names = [info.filename for info in archive.infolist() if not info.is_dir()]
    manifests = [name for name in names if PurePosixPath(name).name == MANIFEST]
    if len(manifests) != 1:
        return [f"expected one {MANIFEST}, found {len(manifests)}"]
    top = str(PurePosixPath(manifests[0]).parent)
    listed = _read_manifest(archive.read(manifests[0]).decode("utf-8"))
    problems = []
    for relative, expected in listed.items():
        member = f"{top}/{relative}"
        if member not in names:
            problems.append(f"{relative} is listed but missing")
        elif _sha256_of(archive, member) != expected:
            problems.append(f"{relative} does not match its checksum")
    unlisted = sorted(set(names) - {f"{top}/{r}" for r in listed} - {manifests[0]})
    problems += [f"{name} is not in the manifest" for name in unlisted]
    return problems


def _read_manifest(text: str) -> dict[str, str]:
    listed = {}
    for line in text.splitlines():
        digest, _, relative = line.partition("  ")
        listed[relative] = digest
    return listed


def _sha256_of(archive: zipfile.ZipFile, member: str) -> str:
    digest = hashlib.sha256()
    with archive.open(member) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
