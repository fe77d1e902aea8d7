"""A fake `ollama` command on PATH that records how it was called, beside a fake local Ollama
server (OLLAMA_HOST points at it): what `register_in_ollama` talks to, without Ollama."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.fake_llm import FakeLLMServer

SCRIPT = """#!{python}
import json, os, sys
from pathlib import Path
record = {{"argv": sys.argv[1:], "cwd": os.getcwd(),
          "modelfile": Path("Modelfile").read_text(encoding="utf-8")}}
Path({log!r}).write_text(json.dumps(record), encoding="utf-8")
print("gathering model components\\nwriting manifest\\nsuccess")
"""


@contextmanager
def fake_ollama(folder: Path, monkeypatch: pytest.MonkeyPatch,
                models: list[str]) -> Iterator[FakeLLMServer]:
    """The server; its `log` attribute is the JSON file where the command writes its call."""
    bin_dir, log = folder / "bin", folder / "ollama-call.json"
    bin_dir.mkdir()
    script = bin_dir / "ollama"
    script.write_text(SCRIPT.format(python=sys.executable, log=str(log)), encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    with FakeLLMServer(models=models) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.base_url)
        server.log = log  # type: ignore[attr-defined]
        yield server
