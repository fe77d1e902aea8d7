"""A full disk under the data folder: one line naming the folder and its free space, exit 1,
and nothing already done lost. A real small filesystem (tmpfs) filled up, where one can be
mounted; elsewhere skipped."""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetuneflow.core.write_errors import write_problem
from tests.helpers.cli import run_cli, run_cli_json


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root: " + mounted.stderr.decode().strip())
    try:
        yield mount / "home"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 65536)
    return filler


def test_a_full_disk_is_one_line_and_loses_nothing(small_home: Path) -> None:
    first = run_cli_json(small_home, "project", "create", "Garden")
    filler = _fill(small_home)
    result = run_cli(small_home, "project", "create", "Manuals")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"finetuneflow: error: The disk that holds {small_home} is full (0 bytes free): free "
        "some space or move the data folder (Settings), then try again. What was done is kept."]
    filler.unlink()
    listed = run_cli_json(small_home, "project", "list")
    assert [project["id"] for project in listed] == [first["id"]]


def test_a_write_that_is_not_allowed_names_the_folder(tmp_path: Path) -> None:
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "raw"))
    problem = write_problem(RuntimeError("wrapped"), tmp_path)
    assert problem is None
    problem = write_problem(denied, tmp_path)
    assert problem is not None and problem.startswith(
        f"FineTuneFlow may not write to {tmp_path / 'raw'} (Permission denied)")
