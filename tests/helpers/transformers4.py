"""A Python with transformers 4.x (tokenizers only, no torch), to check exported folders with
the version tools such as llama.cpp's converter pin.

Made once per machine in ~/.cache/finetuneflow/tf4-venv (FINETUNEFLOW_TF4_VENV overrides),
built aside and renamed so an interrupted build leaves nothing half made; about two minutes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REQUIREMENTS = ("transformers==4.57.*", "jinja2")  # jinja2: 4.x's apply_chat_template


def _venv() -> Path:
    override = os.environ.get("FINETUNEFLOW_TF4_VENV")
    return Path(override) if override else Path.home() / ".cache" / "finetuneflow" / "tf4-venv"


def transformers4_python() -> tuple[Path | None, str]:
    """(the venv's python, "") or (None, why it could not be made)."""
    final = _venv()
    python = final / "bin" / "python"
    if python.is_file():
        return python, ""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="tf4-build-", dir=final.parent))
    except OSError as error:
        return None, f"a transformers 4.x venv cannot be made in {final}: {error}"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True,
                       capture_output=True)
        subprocess.run([str(staging / "bin" / "python"), "-m", "pip", "install", "-q",
                        *REQUIREMENTS], check=True, capture_output=True, text=True)
        with contextlib.suppress(OSError):  # another process won the race: its venv is as good
            staging.rename(final)
    except subprocess.CalledProcessError as error:
        return None, (f"a transformers 4.x venv could not be made in {final} "
                      f"({' '.join(map(str, error.cmd[:4]))} failed: "
                      f"{(error.stderr or '').strip()[-300:]})")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return python, ""
