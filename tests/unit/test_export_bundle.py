from __future__ import annotations

from pathlib import Path

from finetuneflow.core.export.bundle import (
    hub_reference,
    prompt_and_reference,
    spread,
    zip_name,
)


def test_a_hub_cache_folder_names_the_model_and_its_revision() -> None:
    cache = Path("/home/u/.cache/huggingface/hub")
    folder = cache / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / "7ae557604adf67be"
    assert hub_reference(folder) == ("Qwen/Qwen2.5-0.5B-Instruct", "7ae557604adf67be")
    assert hub_reference(Path("/models/my-model")) is None
    assert hub_reference(Path("/x/snapshots/abc")) is None


def test_spread_picks_evenly_through_the_items() -> None:
    assert spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert spread(list(range(3)), 5) == [0, 1, 2]
    assert spread([], 5) == []


def test_the_prompt_is_the_chat_before_its_last_reply() -> None:
    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2"}]
    assert prompt_and_reference(chat) == (chat[:4], "A2")
    assert prompt_and_reference([{"role": "user", "content": "Q"}]) is None
    assert prompt_and_reference([{"role": "assistant", "content": "A"}]) is None


def test_the_zip_is_named_after_the_project_and_the_run() -> None:
    assert zip_name("My Manuals: Q&A", 3) == "finetuneflow-my-manuals-q-a-run-3.zip"
