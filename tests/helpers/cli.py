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


def pump_notes(path: Path) -> Path:
    """A plain-text document of short facts about pumps, to write examples from."""
    path.write_text("\n\n".join(
        f"The {n}th pump in hall {n} is checked every {n + 2} days by the night crew. "
        f"Its filter is replaced after {n * 10} hours of running." for n in range(1, 40)),
        encoding="utf-8")
    return path


def cli_project(home: Path, model_dir: Path, document: Path, chunk_tokens: int = 60) -> str:
    """A project made through the command line: its model set and one document cut into
    chunks of about `chunk_tokens`. Its id."""
    project = run_cli_json(home, "project", "create", "Pumps")["id"]
    run_cli_json(home, "model", "set", project, str(model_dir))
    run_cli_json(home, "ingest", project, str(document), "--chunk-tokens", str(chunk_tokens),
                 "--overlap", "0")
    return str(project)
