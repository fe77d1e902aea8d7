"""A generation run's one-off work is done once per process, so it can be done ahead."""

from __future__ import annotations

from pathlib import Path

from finetuneflow.core.chat_template import ChatRenderer
from finetuneflow.core.generation.client import LLMClient, tls_context
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.services.generation import preload


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
