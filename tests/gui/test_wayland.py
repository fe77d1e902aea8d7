"""The window in a Wayland session: a real compositor (Weston, headless), the app left to pick
its platform as it does on a person's desktop."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetuneflow.gui.system_libraries import gui_start_problem, platforms_to_try
from tests.helpers.cli import cli_env, run_cli
from tests.helpers.images import assert_not_blank

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Wayland is Linux's"),
    pytest.mark.skipif(shutil.which("weston") is None,
                       reason="no Wayland compositor: install weston to run this test"),
]
SOCKET = "wayland-finetuneflow-test"
COMPOSITOR_WAIT_S = 20

# The window as `finetuneflow gui --project … --screenshot …` opens it, then the platform Qt
# chose (the application object outlives run_gui).
START_AND_REPORT = """
import sys
from pathlib import Path
from PySide6.QtGui import QGuiApplication
from finetuneflow.gui.system_libraries import run_gui_if_it_can_start

code = run_gui_if_it_can_start(project="Garden", screenshot=Path(sys.argv[1]))
print("PLATFORM:", QGuiApplication.platformName())
sys.exit(code)
"""


@pytest.fixture
def wayland_session(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A headless Weston, and the variables a Wayland desktop session sets."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    compositor = subprocess.Popen(
        ["weston", "--backend=headless-backend.so", f"--socket={SOCKET}", "--idle-time=0"],
        env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime)), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + COMPOSITOR_WAIT_S
        while not (runtime / SOCKET).exists():
            if compositor.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"weston did not start (exit {compositor.poll()})")
            time.sleep(0.05)
        yield {"XDG_RUNTIME_DIR": str(runtime), "WAYLAND_DISPLAY": SOCKET,
               "XDG_SESSION_TYPE": "wayland"}
    finally:
        compositor.terminate()
        compositor.wait(timeout=30)


def test_a_wayland_session_opens_the_window_through_the_wayland_plugin(
        home: Path, tmp_path: Path, wayland_session: dict[str, str]) -> None:
    assert platforms_to_try(wayland_session) == ["wayland", "xcb"]
    assert gui_start_problem(wayland_session) is None  # the wayland plugin's libraries load
    assert run_cli(home, "project", "create", "Garden").returncode == 0
    env = cli_env(home, **wayland_session)
    for name in ("QT_QPA_PLATFORM", "DISPLAY"):  # as on a desktop: Qt chooses, no X server
        env.pop(name, None)
    screenshot = tmp_path / "wayland.png"
    result = subprocess.run([sys.executable, "-c", START_AND_REPORT, str(screenshot)],
                            capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "PLATFORM: wayland" in result.stdout
    assert_not_blank(screenshot)
