"""Task prompts and templates, connection settings, and the engine's planning helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from finetuneflow.core.generation.engine import (
    ChunkInput,
    estimate_run,
    pick_representative_chunks,
)
from finetuneflow.core.generation.errors import ConfigurationError
from finetuneflow.core.generation.quality import normalise
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.core.generation.tasks import (
    TASK_SPECS,
    Task,
    TaskSettings,
    TaskType,
    load_prompt_template,
    template_problems,
)
from finetuneflow.core.resources import resource_path

CHUNK = "Coolant flows through twelve separate loops every hour. Valves are checked on Mondays."


# -- tasks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", list(TaskType))
def test_every_task_has_a_template_file_that_renders(task_type: TaskType) -> None:
    assert resource_path("prompts", f"{task_type.value}.txt").is_file()
    assert template_problems(load_prompt_template(task_type)) == []
    task = Task(TaskSettings(type=task_type, instruction="Teach polite replies."))
    prompt = task.render_prompt(CHUNK)
    assert CHUNK in prompt
    assert "Return only JSON" in prompt
    assert json.dumps(task.item_schema, ensure_ascii=False) in prompt
    assert "$" not in prompt.replace(CHUNK, "")  # no placeholder left behind


def test_qa_prompt_asks_for_a_verbatim_quote_and_the_settings() -> None:
    task = Task(TaskSettings(examples_per_chunk=5, language="German", difficulty="hard",
                             style="formal"))
    prompt = task.render_prompt(CHUNK)
    assert "Write 5 question-and-answer pairs" in prompt
    assert "copied word for word" in prompt
    assert "Write everything in German." in prompt
    assert "reasoning over several facts" in prompt
    assert "- Style: formal" in prompt
    assert task.item_schema["required"] == ["question", "answer", "quote"]


def test_default_language_is_the_documents_own() -> None:
    assert "same language as the passage" in Task().render_prompt(CHUNK)


def test_custom_task_carries_the_instruction_and_few_shot_examples() -> None:
    settings = TaskSettings(type=TaskType.CUSTOM, instruction="Answer as a pirate.",
                            few_shot=(("Hello", "Ahoy!"),))
    prompt = Task(settings).render_prompt(CHUNK)
    assert "Answer as a pirate." in prompt
    assert '"output": "Ahoy!"' in prompt


def test_extraction_fields_reach_the_prompt() -> None:
    settings = TaskSettings(type=TaskType.EXTRACTION, fields=("date", "amount"))
    assert "date, amount" in Task(settings).render_prompt(CHUNK)


def test_generation_messages_and_example_messages() -> None:
    task = Task(TaskSettings(system_prompt="You are the plant's assistant."))
    generation = task.generation_messages(CHUNK)
    assert [m["role"] for m in generation] == ["system", "user"]
    example = task.example_messages({"question": " Q? ", "answer": "A.", "quote": "x"}, CHUNK)
    assert example == [
        {"role": "system", "content": "You are the plant's assistant."},
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": "A."},
    ]


@pytest.mark.parametrize(
    ("task_type", "item", "user", "assistant"),
    [
        (TaskType.INSTRUCTIONS, {"instruction": "Fix it.", "input": "x = 1", "response": "ok"},
         "Fix it.\n\nx = 1", "ok"),
        (TaskType.SUMMARY, {"instruction": "One sentence.", "summary": "Loops."},
         f"One sentence.\n\n{CHUNK}", "Loops."),
        (TaskType.EXTRACTION, {"instruction": "Counts.", "output": {"loops": 12}},
         f"Counts.\n\n{CHUNK}", '{"loops": 12}'),
        (TaskType.CUSTOM, {"input": "Hi", "output": "Ahoy"}, "Hi", "Ahoy"),
    ],
)
def test_items_become_chat_turns(task_type: TaskType, item: dict, user: str,
                                 assistant: str) -> None:
    task = Task(TaskSettings(type=task_type, instruction="Something."))
    messages = task.example_messages(item, CHUNK)
    assert messages[0]["content"] == TASK_SPECS[task_type].default_system_prompt
    assert (messages[1]["content"], messages[2]["content"]) == (user, assistant)


@pytest.mark.parametrize(
    ("task_type", "item"),
    [
        (TaskType.QA, {"question": "Q?", "answer": "A.", "quote": "x"}),
        (TaskType.INSTRUCTIONS, {"instruction": "Fix it.", "input": "x = 1", "response": "ok"}),
        (TaskType.SUMMARY, {"instruction": "One sentence.", "summary": "Loops."}),
        (TaskType.EXTRACTION, {"instruction": "Counts.", "output": {"loops": 12}}),
        (TaskType.CUSTOM, {"input": "Hi", "output": "Ahoy"}),
    ],
)
def test_dedup_text_from_stored_messages_matches_the_items(task_type: TaskType,
                                                          item: dict) -> None:
    task = Task(TaskSettings(type=task_type, instruction="Something."))
    messages = task.example_messages(item, CHUNK)
    assert normalise(task.dedup_text_of_messages(messages)) == normalise(task.dedup_text(item))


def test_summary_duplicates_are_judged_without_the_shared_chunk() -> None:
    task = Task(TaskSettings(type=TaskType.SUMMARY))
    assert CHUNK not in task.dedup_text({"instruction": "One sentence.", "summary": "Loops."})


def test_response_schema_wraps_items_in_an_object() -> None:
    schema = Task().response_schema()
    assert schema["type"] == "object"
    assert schema["properties"]["examples"]["items"] == Task().item_schema


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (TaskSettings(examples_per_chunk=0), "between 1 and 20"),
        (TaskSettings(difficulty="brutal"), "Difficulty"),
        (TaskSettings(type=TaskType.CUSTOM), "needs an instruction"),
        (TaskSettings(prompt_template="Use $chunk and $chunks"), "$chunks"),
        (TaskSettings(prompt_template="No passage here"), "must contain $chunk"),
        (TaskSettings(prompt_template="Costs $5 $chunk"), "stray"),
    ],
)
def test_bad_task_settings_are_refused_with_a_reason(settings: TaskSettings, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("$", r"\$")):
        Task(settings)


def test_an_edited_template_is_used() -> None:
    task = Task(TaskSettings(prompt_template="Make $n from:\n$chunk\nCost: $$5"))
    assert task.render_prompt("TEXT", 2) == "Make 2 from:\nTEXT\nCost: $5"


def test_task_settings_round_trip() -> None:
    settings = TaskSettings(type=TaskType.CUSTOM, instruction="x", few_shot=(("a", "b"),),
                            fields=("f",))
    data = json.loads(json.dumps(settings.to_dict()))
    assert TaskSettings.from_dict(data) == settings


def test_resources_in_a_frozen_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resource_path("prompts") == tmp_path / "resources" / "prompts"


# -- LLM settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "chat", "models"),
    [
        (LLMSettings(), "https://ollama.com/api/chat", "https://ollama.com/api/tags"),
        (LLMSettings(base_url="https://ollama.com/api/"), "https://ollama.com/api/chat",
         "https://ollama.com/api/tags"),
        (LLMSettings(provider="ollama", api="openai"),
         "http://localhost:11434/v1/chat/completions", "http://localhost:11434/v1/models"),
        (LLMSettings(provider="ollama", base_url="http://gpu:11434/v1"),
         "http://gpu:11434/api/chat", "http://gpu:11434/api/tags"),
        (LLMSettings(provider="openai", base_url="http://host:8000/v1", model="m"),
         "http://host:8000/v1/chat/completions", "http://host:8000/v1/models"),
    ],
)
def test_endpoint_urls(settings: LLMSettings, chat: str, models: str) -> None:
    assert (settings.chat_url, settings.models_url) == (chat, models)


def test_provider_defaults() -> None:
    cloud, local, openai = LLMSettings(), LLMSettings(provider="ollama"), LLMSettings(
        provider="openai")
    assert (cloud.resolved_api, local.resolved_api, openai.resolved_api) == (
        "native", "native", "openai")
    assert cloud.resolved_concurrency == 3
    assert cloud.resolved_model  # a free-tier default
    assert cloud.temperature == 0.2 and cloud.read_timeout == 300


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (LLMSettings(base_url="https://api.ollama.com"), "use https://ollama.com"),
        (LLMSettings(base_url="ollama.com"), "must look like"),
        (LLMSettings(base_url="https://user:secret@ollama.com"), "not in the base URL"),
        (LLMSettings(provider="openai", api="native", model="m"), "needs api = openai"),
        (LLMSettings(provider="openai"), "Choose a model"),
        (LLMSettings(concurrency=0), "Concurrency"),
    ],
)
def test_settings_problems(settings: LLMSettings, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        settings.validate()


def test_settings_serialise_without_any_secret() -> None:
    data = LLMSettings(model="gpt-oss:20b").to_dict()
    assert not any("key" in name for name in data)
    restored = LLMSettings.from_dict({**data, "api_key": "sk-should-vanish", "future": 1})
    assert restored == LLMSettings(model="gpt-oss:20b")


# -- planning helpers -----------------------------------------------------------------------


def _chunks(files: dict[str, int]) -> list[ChunkInput]:
    return [
        ChunkInput(id=f"{name}:{i}", text="word " * 100, file_id=name, ordinal=i)
        for name, count in files.items()
        for i in range(count)
    ]


def test_representative_chunks_spread_over_files_and_positions() -> None:
    picked = pick_representative_chunks(_chunks({"big": 40, "mid": 10, "small": 2}), k=5)
    assert [c.file_id for c in picked] == ["big", "big", "mid", "mid", "small"]
    assert [c.ordinal for c in picked if c.file_id == "big"] == [10, 30]


def test_representative_chunks_avoid_stubs_and_handle_small_inputs() -> None:
    chunks = _chunks({"a": 6})
    stub = ChunkInput(id="stub", text="Title", file_id="a", ordinal=0)
    picked = pick_representative_chunks([stub, *chunks], k=4)
    assert stub not in picked and len(picked) == 4
    assert pick_representative_chunks(chunks[:2], k=4) == chunks[:2]
    assert pick_representative_chunks([], k=3) == []


def test_estimate_run_scales_with_examples_and_concurrency() -> None:
    estimate = estimate_run(100, 6, 10.0, (500, 300), 4, measured_per_chunk=3)
    assert estimate.requests == 100
    assert estimate.prompt_tokens == 50_000
    assert estimate.completion_tokens == 60_000  # twice the examples, twice the output
    assert estimate.seconds == pytest.approx(25 * 10.0 * 2)
    assert estimate.total_tokens == 110_000


def test_estimate_run_keeps_unknown_tokens_unknown() -> None:
    estimate = estimate_run(10, 3, 2.0, (None, None), 3)
    assert estimate.prompt_tokens is None and estimate.total_tokens is None
