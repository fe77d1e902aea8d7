"""Run a Modelfile TEMPLATE through Go's own text/template, as Ollama does (tests/gotemplate).

The Go program is built once per machine and source version into the test cache folder;
`go_renderer()` returns None, with the reason, where Go is not installed (Debian: golang-go).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.helpers.tiny_model import _cache_root

SOURCE = Path(__file__).resolve().parent.parent / "gotemplate" / "main.go"
Message = dict[str, str]
Renderer = Callable[[str, list[Message]], str]


def go_renderer() -> tuple[Renderer | None, str]:
    """(render(template, messages) -> prompt, "") or (None, why Go cannot be used here)."""
    go = shutil.which("go")
    if go is None:
        return None, "Go is not installed (apt-get install golang-go): the Modelfile TEMPLATE " \
                     "cannot be run through Go's text/template"
    binary = _build(go)

    def render(template: str, messages: list[Message]) -> str:
        request = {"template": template, "messages": messages, "tools": []}
        result = subprocess.run([str(binary)], input=json.dumps(request), capture_output=True,
                                text=True, encoding="utf-8", check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return render, ""


def _build(go: str) -> Path:
    source = SOURCE.read_bytes()
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(source + version.encode()).hexdigest()[:16]
    folder = _cache_root() / "gotemplate"
    binary = folder / f"gotemplate-{digest}"
    if binary.is_file():
        return binary
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f"build-{os.getpid()}"
    environment = {**os.environ, "GOCACHE": str(folder / "go-build"),
                   "GOPATH": str(folder / "gopath"), "GOFLAGS": "", "GO111MODULE": "on"}
    subprocess.run([go, "build", "-o", str(staging), str(SOURCE)], env=environment,
                   check=True, capture_output=True)
    staging.replace(binary)  # atomic: a concurrent build ends with the same file
    return binary
