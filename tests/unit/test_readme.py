"""The README's two commands are the contract with a new user and with CI."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text.split("## What it does")[0])


def test_readme_opens_with_install_and_test_commands() -> None:
    install, test = readme_commands()
    assert install.endswith(".venv/bin/finetuneflow")
    assert "pytest" in test and ".[test]" in test
    assert install.index("torch==") < install.index("-e .")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test = readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test in ci_lines


def test_readme_installs_exactly_the_libraries_the_window_needs() -> None:
    from finetuneflow.gui.system_libraries import LINUX_GUI_PACKAGES

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"sudo apt-get install {' '.join(LINUX_GUI_PACKAGES)}\n" in text
