"""Shared fixtures: a fresh home folder per test, offscreen Qt, no Hub, the tiny model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports Qt or huggingface_hub.
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own FINETUNEFLOW_HOME, so nothing touches the user's data."""
    root = tmp_path / "home"
    monkeypatch.setenv("FINETUNEFLOW_HOME", str(root))
    monkeypatch.setenv("FINETUNEFLOW_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("OLLAMA_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture(autouse=True)
def keychain() -> Iterator:
    """A fresh in-memory OS keychain per test (the real one is neither touched nor needed)."""
    import keyring

    from tests.helpers.memory_keyring import MemoryKeyring

    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    yield memory
    keyring.set_keyring(previous)


@pytest.fixture
def context(home: Path) -> Iterator:
    from finetuneflow.services.context import AppContext

    app_context = AppContext.open()
    yield app_context
    app_context.close()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from tests.helpers.tiny_model import cached_tiny_model

    return cached_tiny_model()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"corpus tests need the real-world documents at {CORPUS_DIR} (see README)")
    return CORPUS_DIR



@pytest.fixture
def fake_llm() -> Iterator:
    """A fake Ollama/OpenAI-compatible server on 127.0.0.1 (see tests/helpers/fake_llm.py)."""
    from tests.helpers.fake_llm import FakeLLMServer

    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator:
    """An OpenSSH server on 127.0.0.1 with throwaway keys (see tests/helpers/sshd.py)."""
    from tests.helpers.sshd import running_sshd

    folder = tmp_path / "sshd"
    folder.mkdir()
    with running_sshd(folder) as server:
        yield server
