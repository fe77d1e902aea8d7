"""`project delete` asks on a terminal, refuses without one, and `--yes` skips the question."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.helpers.cli import REPO_ROOT, cli_env, run_cli, run_cli_json


def delete_on_a_terminal(home: Path, project: str, answer: str) -> tuple[int, str]:
    """Run `project delete` with a pseudo-terminal as stdin and type `answer`."""
    leader, follower = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "finetuneflow", "project", "delete", project],
            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cli_env(home), cwd=REPO_ROOT)
        os.write(leader, f"{answer}\n".encode())
        _, stderr = child.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    return child.returncode, stderr


def names(home: Path) -> list[str]:
    return [p["name"] for p in run_cli_json(home, "project", "list")]


def test_delete_asks_on_a_terminal(home: Path) -> None:
    project = run_cli_json(home, "project", "create", "Keep me")["id"]
    code, stderr = delete_on_a_terminal(home, project, "n")
    assert code == 1 and "Delete project 'Keep me'" in stderr and "Nothing deleted" in stderr
    assert names(home) == ["Keep me"]
    code, stderr = delete_on_a_terminal(home, project, "y")
    assert code == 0 and "Deleted project 'Keep me'" in stderr
    assert names(home) == []


def test_delete_without_a_terminal_needs_yes(home: Path) -> None:
    project = run_cli_json(home, "project", "create", "Scripted")["id"]
    refused = run_cli(home, "project", "delete", project)
    assert refused.returncode == 1 and names(home) == ["Scripted"]
    assert len(refused.stderr.splitlines()) == 1 and "--yes" in refused.stderr
    deleted = run_cli(home, "project", "delete", "Scripted", "--yes")
    assert deleted.returncode == 0 and names(home) == []
