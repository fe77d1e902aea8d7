from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from finetuneflow.core.export.archive import MANIFEST, verify_archive, write_archive
from finetuneflow.core.progress import Cancelled, CancelToken
from tests.helpers.cli import REPO_ROOT, cli_env


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    (root / "adapter").mkdir(parents=True)
    (root / "adapter" / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
    (root / "adapter" / "adapter_config.json").write_text('{"r": 8}\n')
    (root / "report.md").write_text("# Report\n" * 100)
    return root


def test_the_manifest_lists_every_file_with_its_checksum(folder: Path, tmp_path: Path) -> None:
    zip_path = tmp_path / "out" / "export.zip"
    entries = write_archive(folder, zip_path, top="finetuneflow-x-run-1")
    assert [entry.path for entry in entries] == [
        "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "report.md"]
    with zipfile.ZipFile(zip_path) as archive:
        manifest = archive.read(f"finetuneflow-x-run-1/{MANIFEST}").decode()
        weights = archive.getinfo("finetuneflow-x-run-1/adapter/adapter_model.safetensors")
        report = archive.getinfo("finetuneflow-x-run-1/report.md")
    for line in manifest.splitlines():  # sha256sum's format: "<hex>  <path>"
        digest, path = line.split("  ")
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == digest
    assert weights.compress_type == zipfile.ZIP_STORED
    assert report.compress_type == zipfile.ZIP_DEFLATED
    assert verify_archive(zip_path) == []
    assert not list(zip_path.parent.glob("*.partial"))


def _rewrite(source: Path, target: Path, change: dict[str, bytes | None]) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = change.get(info.filename, old.read(info))
            if data is not None:
                new.writestr(info.filename, data)
        for name, data in change.items():
            if name not in old.namelist() and data is not None:
                new.writestr(name, data)


def test_verify_names_altered_missing_and_extra_files(folder: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    write_archive(folder, good, top="t")
    bad = tmp_path / "bad.zip"
    _rewrite(good, bad, {"t/report.md": b"changed", "t/adapter/adapter_config.json": None,
                         "t/extra.txt": b"x"})
    assert verify_archive(bad) == ["adapter/adapter_config.json is listed but missing",
                                   "report.md does not match its checksum",
                                   "t/extra.txt is not in the manifest"]
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert "cannot be read as a zip" in verify_archive(tmp_path / "junk.zip")[0]


def test_a_cancelled_zip_leaves_the_previous_one_intact(folder: Path, tmp_path: Path) -> None:
    zip_path = tmp_path / "export.zip"
    write_archive(folder, zip_path, top="t")
    before = zip_path.read_bytes()
    cancel = CancelToken()

    def cancel_on_second_file(fraction: float, message: str) -> None:
        if "adapter_model" in message:
            cancel.cancel()

    (folder / "report.md").write_text("# A newer report\n")
    with pytest.raises(Cancelled):
        write_archive(folder, zip_path, top="t", progress=cancel_on_second_file, cancel=cancel)
    assert zip_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "export.zip"]


HANG_IN_THE_MIDDLE = """
import sys, threading
from pathlib import Path
from finetuneflow.core.export.archive import write_archive

def sink(fraction, message):
    if "adapter_model" in message:
        Path(sys.argv[3]).write_text("writing")
        threading.Event().wait()  # until killed

write_archive(Path(sys.argv[1]), Path(sys.argv[2]), top="t", progress=sink)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_export_leaves_no_file_under_the_final_name(folder: Path,
                                                             tmp_path: Path) -> None:
    zip_path, marker = tmp_path / "out" / "export.zip", tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", HANG_IN_THE_MIDDLE, str(folder),
                              str(zip_path), str(marker)], env=cli_env(tmp_path), cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the child never reached the second file"
        assert list(zip_path.parent.glob(".export.zip.*.partial"))  # half written
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert not zip_path.exists()
    write_archive(folder, zip_path, top="t")  # the next export cleans up the leftover
    assert [p.name for p in zip_path.parent.iterdir()] == ["export.zip"]
    assert verify_archive(zip_path) == []
