"""Run the real `finetuneflow` command line in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FINETUNEFLOW_HOME=str(home), PYTHONPATH=str(REPO_ROOT), **extra)
    return env


def run_cli(home: Path, *args: str, timeout: float = 120, **env: str
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "finetuneflow", *args], capture_output=True,
                          text=True, env=cli_env(home, **env), timeout=timeout, cwd=REPO_ROOT)


def run_cli_json(home: Path, *args: str, **env: str) -> Any:
    result = run_cli(home, *args, "--json", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
