"""The check that runs before Qt: a missing system library is named, with the command that
installs it, instead of Qt aborting the process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finetuneflow.gui.system_libraries import (
    DEBIAN_PACKAGES,
    EXIT_GUI_LIBRARIES_MISSING,
    LINUX_GUI_PACKAGES,
    gui_start_problem,
    install_hint,
    platforms_to_try,
)
from tests.helpers.cli import REPO_ROOT, cli_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _plugins_with_a_missing_library(tmp_path: Path, soname: str) -> Path:
    """A plugin folder whose xcb plugin links a library that is then deleted, as on a machine
    without that package."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler to build a stand-in plugin")
    (tmp_path / "dep.c").write_text("int dep(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text("int dep(void);\nint plugin(void) { return dep(); }\n")
    library = tmp_path / soname
    subprocess.run([compiler, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", library,
                    tmp_path / "dep.c"], check=True)
    platforms = tmp_path / "plugins" / "platforms"
    platforms.mkdir(parents=True)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", platforms / "libqxcb.so",
                    tmp_path / "plugin.c", library], check=True)
    library.unlink()
    return tmp_path / "plugins"


MISSING = "libfinetuneflow-absent.so.4"  # a name no system has, so the loader cannot find it


def test_a_missing_library_is_named_with_the_package_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = _plugins_with_a_missing_library(tmp_path, MISSING)
    monkeypatch.setitem(DEBIAN_PACKAGES, MISSING, "libfinetuneflow-absent4")
    problem = gui_start_problem({"DISPLAY": ":0"}, plugins)
    assert problem == (f"The window cannot open: the system library {MISSING} is missing; on "
                       "Debian or Ubuntu: sudo apt-get install libfinetuneflow-absent4 "
                       "(elsewhere, the packages that provide these files).")


def test_a_library_without_a_known_package_is_still_named(tmp_path: Path) -> None:
    plugins = _plugins_with_a_missing_library(tmp_path, MISSING)
    problem = gui_start_problem({"DISPLAY": ":0"}, plugins)
    assert problem is not None and MISSING in problem
    assert "apt-get" not in problem and "\n" not in problem


def test_the_packages_named_for_missing_qt_libraries() -> None:
    assert install_hint(("libxcb-icccm.so.4", "libxcb-keysyms.so.1")).startswith(
        "on Debian or Ubuntu: sudo apt-get install libxcb-icccm4 libxcb-keysyms1 ")
    assert set(DEBIAN_PACKAGES.values()) <= set(LINUX_GUI_PACKAGES) | {
        "libopengl0", "libwayland-egl1", "libxcb-xinerama0"}


def test_wayland_is_enough_when_its_plugin_loads(tmp_path: Path) -> None:
    plugins = _plugins_with_a_missing_library(tmp_path, MISSING)
    wayland = plugins / "platforms" / "libqwayland.so"
    subprocess.run([shutil.which("cc") or "gcc", "-shared", "-fPIC", "-o", wayland, "-x", "c",
                    "/dev/null"], check=True)
    assert gui_start_problem({"WAYLAND_DISPLAY": "wayland-0"}, plugins) is None
    assert gui_start_problem({"DISPLAY": ":0"}, plugins) is not None


def test_platforms_qt_will_try() -> None:
    assert platforms_to_try({}) == ["xcb"]
    assert platforms_to_try({"WAYLAND_DISPLAY": "wayland-0"}) == ["wayland", "xcb"]
    assert platforms_to_try({"QT_QPA_PLATFORM": "offscreen"}) == []
    assert platforms_to_try({"QT_QPA_PLATFORM": "xcb"}) == ["xcb"]
    assert platforms_to_try({"QT_QPA_PLATFORM": "wayland;xcb"}) == ["wayland", "xcb"]


def test_the_command_exits_with_the_message_before_qt_starts(tmp_path: Path) -> None:
    """The real entry point with the check pointed at the stand-in plugins: one line, exit 3,
    and Qt never aborts the process."""
    plugins = _plugins_with_a_missing_library(tmp_path, MISSING)
    code = ("import sys, finetuneflow.gui.system_libraries as check\n"
            f"check.plugins_dir = lambda: __import__('pathlib').Path({str(plugins)!r})\n"
            "from finetuneflow.__main__ import main\n"
            "sys.exit(main([]))\n")
    env = cli_env(tmp_path / "home", DISPLAY=":0")
    env.pop("QT_QPA_PLATFORM", None)
    env.pop("WAYLAND_DISPLAY", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == EXIT_GUI_LIBRARIES_MISSING
    assert result.stderr.strip().splitlines() == [
        f"The window cannot open: the system library {MISSING} is missing; install the "
        "package that provides it with your system's package manager."]
    assert "PySide6.QtWidgets" not in result.stderr
