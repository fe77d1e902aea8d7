"""A generation run's one-off work is done once per process, so it can be done ahead; the window
preloads it with its pages and the charts' library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from finetuneflow.core.chat_template import ChatRenderer
from finetuneflow.core.generation.client import LLMClient, tls_context
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.services.generation import preload
from tests.helpers.cli import REPO_ROOT


def test_runs_share_the_tls_context_and_the_compiled_template(tiny_model_dir: Path) -> None:
    preload()
    first, second = (LLMClient(LLMSettings(provider="ollama", base_url="https://example.org",
                                                   model="m"))
                     for _ in range(2))
    try:
        assert tls_context() is tls_context()
        # httpx keeps the context it was given on its transport's connection pool.
        contexts = {id(client._http._transport._pool._ssl_context) for client in (first, second)}
        assert contexts == {id(tls_context())}
    finally:
        first.close()
        second.close()
    one, two = ChatRenderer.for_model(tiny_model_dir), ChatRenderer.for_model(tiny_model_dir)
    assert one._template is two._template
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert one.render(chat) == two.render(chat) and "Hello" in one.render(chat)


PRELOAD_IN_A_NEW_PROCESS = """
import gc, sys
from finetuneflow.gui.main_window import preload
from finetuneflow.gui.wizard import PAGE_CLASSES
pages = [f"finetuneflow.gui.pages.{path.partition('.')[0]}" for path in PAGE_CLASSES.values()]
assert not [name for name in [*pages, "pyqtgraph"] if name in sys.modules], "loaded already"
preload()
missing = [name for name in [*pages, "pyqtgraph"] if name not in sys.modules]
assert not missing, f"not preloaded: {missing}"
assert gc.get_freeze_count() > 10_000, "what was loaded is left to the collector's full passes"
"""


def test_the_window_preloads_its_pages_and_the_chart_library() -> None:
    result = subprocess.run([sys.executable, "-c", PRELOAD_IN_A_NEW_PROCESS],
                            capture_output=True, text=True, cwd=REPO_ROOT,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
