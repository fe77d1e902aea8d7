"""Render the README's screenshots into resources/screenshots/ from a demo project.

    python -m tests.helpers.screenshots

The demo uses the tiny test model, a few corpus documents and a short training run, in a
temporary home folder, so the pictures show real pages with real data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers.cli import REPO_ROOT, cli_env
from tests.helpers.fake_llm import FakeLLMServer
from tests.helpers.tiny_model import cached_tiny_model

OUT = REPO_ROOT / "resources" / "screenshots"
CORPUS = REPO_ROOT.parent / "shared" / "corpus"
DOCUMENTS = ("pdf/normal_pdflatex_4pages.pdf", "docx/tables_footer_footnotes_form.docx",
             "md/readme_crlf_qpdf-windows.md", "pdf/encrypted_userpw_aes-256.pdf",
             "pdf/scanned_xerox-jbig2_no-text.pdf")
PAGES = ("model", "task", "data", "preview", "review", "hardware", "train", "export")


def cli(home: Path, *args: str) -> str:
    env = cli_env(home, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([sys.executable, "-m", "finetuneflow", *args], env=env,
                            capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return result.stdout.strip()


def build_demo(home: Path) -> str:
    project = json.loads(cli(home, "project", "create", "Research governance Q&A",
                             "--json"))["id"]
    cli(home, "project", "create", "Support manual")
    cli(home, "model", "set", project, str(cached_tiny_model()))
    cli(home, "ingest", project, *(str(CORPUS / name) for name in DOCUMENTS))
    with FakeLLMServer(latency_ms=(50, 300)) as server:
        cli(home, "generate", project, "--preview", "--provider", "ollama", "--base-url",
            server.base_url, "--llm", "gpt-oss:20b", "--concurrency", "4")
        cli(home, "generate", project, "--full")
    data = home / "qa.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"What is {i} plus 1?",
                                          "completion": f"{i + 1}"}) for i in range(120)),
                    encoding="utf-8")
    cli(home, "dataset", "import", project, str(data))
    cli(home, "train", project, "--preset", "quick", "--max-steps", "40")
    return project


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["FINETUNEFLOW_HOME"] = str(home)
        project = build_demo(home)
        cli(home, "gui", "--screenshot", str(OUT / "dashboard.png"))
        for page in PAGES:
            cli(home, "gui", "--project", project, "--page", page, "--screenshot",
                str(OUT / f"{page}.png"))
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
