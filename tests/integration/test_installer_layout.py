"""packaging/build.py's Linux installers, made from a stand-in bundle in a second: the .deb's
layout (command, menu entry, icons, control fields) and the .tar.gz. The real bundle is built
and run by the packaging smoke test (tests/packaging)."""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from finetuneflow import __version__
from finetuneflow.gui.system_libraries import LINUX_GUI_PACKAGES
from tests.helpers.cli import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


@pytest.fixture(scope="module")
def build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build", REPO_ROOT / "packaging" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """What PyInstaller makes, in miniature: the executable and its _internal folder."""
    folder = tmp_path / "dist" / "FineTuneFlow"
    (folder / "_internal").mkdir(parents=True)
    (folder / "_internal" / "base_library.zip").write_bytes(b"library")
    app = folder / "FineTuneFlow"
    app.write_text("#!/bin/sh\necho FineTuneFlow stand-in \"$@\"\n", encoding="utf-8")
    app.chmod(0o755)
    return folder


def test_the_deb_installs_the_app_a_command_a_menu_entry_and_icons(
        build: ModuleType, bundle: Path, tmp_path: Path) -> None:
    deb = build.build_deb(bundle, bundle.parent, __version__)
    assert deb.name.startswith(f"finetuneflow_{__version__}_")
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Depends"],
                            capture_output=True, text=True, check=True).stdout
    assert f"Version: {__version__}" in fields
    depends = fields.split("Depends: ", 1)[1].split("\n", 1)[0].split(", ")
    assert set(LINUX_GUI_PACKAGES) <= set(depends)
    root = tmp_path / "root"
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(root / "usr/share/applications/finetuneflow.desktop", encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Exec"] == "/opt/finetuneflow/FineTuneFlow" and desktop["Type"] == "Application"
    assert os.access(root / desktop["Exec"].lstrip("/"), os.X_OK)
    assert (root / "opt/finetuneflow/_internal/base_library.zip").read_bytes() == b"library"
    for size in (256, 512):
        icon = root / f"usr/share/icons/hicolor/{size}x{size}/apps/{desktop['Icon']}.png"
        assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    command = subprocess.run([str(root / "usr/bin/finetuneflow"), "--version"],
                             capture_output=True, text=True, check=True)
    assert command.stdout.strip() == "FineTuneFlow stand-in --version"


def test_the_tarball_holds_the_app_folder_owned_by_root(build: ModuleType,
                                                        bundle: Path) -> None:
    archive = build.build_tarball(bundle, bundle.parent, __version__)
    with tarfile.open(archive, "r:gz") as tar:
        app = tar.getmember("FineTuneFlow/FineTuneFlow")
        names = tar.getnames()
    assert app.mode & 0o111 and app.uid == 0 and app.uname == "root"
    assert "FineTuneFlow/_internal/base_library.zip" in names
