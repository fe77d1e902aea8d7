"""Before Qt starts on Linux: are the system libraries of its window plugins there?

Without them Qt aborts the whole process (exit 134) with a message that names one library,
often not the one that is missing. This check runs before any Qt module is imported, so it
imports no Qt itself: it asks the system's loader (`ldd`) what each platform plugin needs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The library files Qt's xcb and wayland plugins load, and the packages that hold them.
DEBIAN_PACKAGES = {
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libOpenGL.so.0": "libopengl0",
    "libX11.so.6": "libx11-6", "libX11-xcb.so.1": "libx11-xcb1",
    "libdbus-1.so.3": "libdbus-1-3", "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6", "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libwayland-client.so.0": "libwayland-client0", "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    "libxcb.so.1": "libxcb1", "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0", "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1", "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}
# Every package behind the libraries that the pinned PySide6's xcb and wayland plugins (and the
# Qt libraries under them) load, beyond a base system (libc, libstdc++, zlib, zstd): `readelf -d`
# on the plugins, checked on Debian 12. The README's apt-get line and the .deb's Depends use it.
LINUX_GUI_PACKAGES = (
    "libegl1", "libgl1", "libfontconfig1", "libfreetype6", "libdbus-1-3", "libglib2.0-0",
    "libx11-6", "libx11-xcb1", "libxkbcommon0", "libxkbcommon-x11-0", "libxcb1",
    "libxcb-cursor0", "libxcb-glx0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1",
    "libxcb-randr0", "libxcb-render0", "libxcb-render-util0", "libxcb-shape0", "libxcb-shm0",
    "libxcb-sync1", "libxcb-util1", "libxcb-xfixes0", "libxcb-xkb1",
    "libwayland-client0", "libwayland-cursor0",
)
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)
_DLOPEN_MISSING = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")


@dataclass(frozen=True)
class PluginCheck:
    platform: str  # "xcb", "wayland"
    missing: tuple[str, ...]  # library file names the loader could not find


def plugins_dir() -> Path | None:
    """PySide6's Qt plugin folder, found without importing Qt (which would load the libraries)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins"


def platforms_to_try(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """The platform plugins Qt will try, in its order; empty when it is told to use one that
    needs no display libraries (offscreen, minimal, vnc …)."""
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        names = [part.split(":")[0] for part in chosen.split(";") if part]
        return [name for name in names if name in {"xcb", "wayland"}] if all(
            name in {"xcb", "wayland"} for name in names) else []
    return ["wayland", "xcb"] if environ.get("WAYLAND_DISPLAY") else ["xcb"]


def missing_libraries(library: Path) -> tuple[str, ...]:
    """The libraries the loader cannot find for this shared object, all of them when `ldd`
    exists, else the first one `dlopen` names."""
    if shutil.which("ldd"):
        result = subprocess.run(["ldd", str(library)], capture_output=True, text=True,
                                timeout=30, check=False)
        return tuple(dict.fromkeys(_NOT_FOUND.findall(result.stdout)))
    import ctypes

    try:
        ctypes.CDLL(str(library))
    except OSError as error:
        found = _DLOPEN_MISSING.search(str(error))
        return (found.group(1),) if found else ()
    return ()


def check_plugin(platform: str, folder: Path) -> PluginCheck:
    plugin = folder / "platforms" / f"libq{platform}.so"
    if not plugin.exists():
        return PluginCheck(platform, (plugin.name,))
    return PluginCheck(platform, missing_libraries(plugin))


def install_hint(missing: tuple[str, ...]) -> str:
    packages = sorted({DEBIAN_PACKAGES[name] for name in missing if name in DEBIAN_PACKAGES})
    if not packages:
        return ("install the package that provides it" if len(missing) == 1 else
                "install the packages that provide them") + " with your system's package manager"
    return (f"on Debian or Ubuntu: sudo apt-get install {' '.join(packages)} "
            "(elsewhere, the packages that provide these files)")


def gui_start_problem(environ: dict[str, str] | os._Environ[str] | None = None,
                      folder: Path | None = None) -> str | None:
    """One line saying why the window cannot open and what to install; None when it can (or
    when this is not Linux, or the check cannot tell)."""
    if not sys.platform.startswith("linux"):
        return None
    environ = os.environ if environ is None else environ
    folder = folder or plugins_dir()
    platforms = platforms_to_try(environ)
    if folder is None or not platforms:
        return None
    checks = [check_plugin(platform, folder) for platform in platforms]
    if any(not check.missing for check in checks):
        return None
    missing = tuple(dict.fromkeys(name for check in checks for name in check.missing))
    named = (f"the system library {missing[0]} is" if len(missing) == 1 else
             f"the system libraries {', '.join(missing)} are")
    return f"The window cannot open: {named} missing; {install_hint(missing)}."


EXIT_GUI_LIBRARIES_MISSING = 3


def run_gui_if_it_can_start(**options: Any) -> int:
    """Open the window, or say in one line which system libraries to install (exit 3)."""
    problem = gui_start_problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_GUI_LIBRARIES_MISSING
    from finetuneflow.gui.app import run_gui

    return run_gui(**options)
