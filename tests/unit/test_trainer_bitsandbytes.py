"""The trainer imports bitsandbytes (through peft) only for the QLoRA training that needs it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import REPO_ROOT

SEEN_BY_PEFT = """
import sys
from pathlib import Path
from finetuneflow.trainer.cli import hide_bitsandbytes_unless_needed
hide_bitsandbytes_unless_needed(sys.argv[1], Path(sys.argv[2]))
from peft.import_utils import is_bnb_available
print(is_bnb_available())
"""

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                reason="bitsandbytes is not installed (macOS)")


@pytest.mark.parametrize(("command", "method", "seen"), [
    ("run", "qlora", "True"), ("speed", None, "False"), ("export", "qlora", "False"),
])
def test_peft_sees_bitsandbytes_only_for_qlora_training(
        tmp_path: Path, command: str, method: str | None, seen: str) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"config": {"method": method} if method else {}}))
    result = subprocess.run([sys.executable, "-c", SEEN_BY_PEFT, command, str(job)],
                            capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.split()[-1] == seen
