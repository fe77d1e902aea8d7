"""A project's typed settings: defaults, round trips, checks on the way in, tolerant reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import update

from finetuneflow.core.chunking import ChunkSettings
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.core.generation.tasks import TaskSettings, TaskType
from finetuneflow.core.project_settings import ModelRef, ProjectSettings
from finetuneflow.core.training.config import TrainingConfig, preset_config
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import Project

SERVICES = Path(__file__).resolve().parents[2] / "finetuneflow" / "services"

LLM = LLMSettings(provider="ollama", base_url="http://127.0.0.1:11434", model="qwen3:4b",
                  temperature=0.7)
TASK = TaskSettings(type=TaskType.SUMMARY, examples_per_chunk=2, system_prompt="Be brief.")


@pytest.fixture
def project_id(context: AppContext) -> str:
    return ProjectService(context).create("Settings").id


def _save_everything(context: AppContext, project_id: str, folder: Path) -> ProjectSettings:
    with context.transaction() as tx:
        tx.projects.save_model(project_id, ModelRef(str(folder), "local", folder))
        tx.projects.save_task(project_id, TASK)
        tx.projects.save_chunking(project_id, ChunkSettings(256, 32))
        tx.projects.save_llm(project_id, LLM)
        tx.projects.save_training(project_id, preset_config("quick", lora_r=4))
        tx.projects.set_note(project_id, "Try a smaller model.")
        tx.projects.mark_sample(project_id)
    return ProjectSettings(ModelRef(str(folder), "local", folder), TASK, ChunkSettings(256, 32),
                           LLM, preset_config("quick", lora_r=4), "Try a smaller model.", True)


def test_a_new_project_has_the_defaults(context: AppContext, project_id: str) -> None:
    with context.transaction() as tx:
        settings = tx.projects.settings(project_id)
    assert settings == ProjectSettings()
    assert settings.model is None and settings.llm is None and settings.training is None
    assert settings.chunking == ChunkSettings() and settings.task == TaskSettings()


def test_every_section_round_trips(context: AppContext, project_id: str,
                                   tmp_path: Path) -> None:
    expected = _save_everything(context, project_id, tmp_path)
    with context.transaction() as tx:
        assert tx.projects.settings(project_id) == expected
    summary = ProjectService(context).get(project_id)
    assert summary.base_model == str(tmp_path) and summary.note == "Try a smaller model."


def test_the_model_is_stored_once_and_a_change_is_reported(context: AppContext,
                                                           project_id: str) -> None:
    hub = ModelRef("org/model", "hub", Path("/cache/org-model"))
    with context.transaction() as tx:
        assert tx.projects.save_model(project_id, hub) is True
        assert tx.projects.save_model(project_id, hub) is False
        assert tx.projects.save_model(project_id, ModelRef("org/other", "hub", Path("/c"))) is True
    with context.database.session() as session:
        row = session.get(Project, project_id)
        assert row is not None
        assert (row.base_model, row.base_model_source, row.base_model_folder) == (
            "org/other", "hub", "/c")


def test_saving_the_same_chunk_settings_says_nothing_changed(context: AppContext,
                                                             project_id: str) -> None:
    with context.transaction() as tx:
        assert tx.projects.save_chunking(project_id, ChunkSettings()) is False
        assert tx.projects.save_chunking(project_id, ChunkSettings(128, 16)) is True
        assert tx.projects.save_chunking(project_id, ChunkSettings(128, 16)) is False


@pytest.mark.parametrize(("save", "value", "message"), [
    ("save_chunking", ChunkSettings(100, 60), "overlap .* less than half"),
    ("save_chunking", ChunkSettings(8, 0), "chunk size must be between"),
    ("save_llm", LLMSettings(temperature=5.0), "Temperature must be between 0 and 2"),
    ("save_llm", LLMSettings(provider="ollama", base_url="ftp://x"), "must look like http"),
    ("save_training", TrainingConfig(lora_r=0), "LoRA rank"),
    ("save_task", TaskSettings(type=TaskType.CUSTOM), "custom task needs an instruction"),
    ("save_model", ModelRef("org/model", "ftp", Path("/m")), "comes from hub or local"),
    ("save_model", ModelRef(" ", "hub", Path("/m")), "needs a name or folder"),
])
def test_invalid_settings_are_refused_with_a_clear_message(
        context: AppContext, project_id: str, save: str, value: object, message: str) -> None:
    with pytest.raises(UserError, match=message), context.transaction() as tx:
        getattr(tx.projects, save)(project_id, value)
    with context.transaction() as tx:
        assert tx.projects.settings(project_id) == ProjectSettings()  # nothing was stored


def _store_raw(context: AppContext, project_id: str, **columns: object) -> None:
    with context.database.session() as session:
        session.execute(update(Project).where(Project.id == project_id).values(**columns))


def test_keys_from_a_newer_version_are_ignored(context: AppContext, project_id: str) -> None:
    _store_raw(context, project_id,
               chunking={"max_tokens": 300, "overlap_tokens": 20, "by_heading": True},
               llm={**LLM.to_dict(), "api_key_hint": "x"},
               training={**preset_config("quick").to_dict(), "new_knob": 1})
    with context.transaction() as tx:
        settings = tx.projects.settings(project_id)
    assert settings.chunking == ChunkSettings(300, 20)
    assert settings.llm == LLM and settings.training == preset_config("quick")


def test_unusable_stored_sections_fall_back_to_the_defaults(context: AppContext,
                                                            project_id: str) -> None:
    _store_raw(context, project_id, chunking={"max_tokens": "lots"}, llm=["not", "an", "object"],
               training={"lora_r": -3}, task_config={"type": "poetry"})
    with context.transaction() as tx:
        assert tx.projects.settings(project_id) == ProjectSettings()


def test_a_copy_takes_every_setting(context: AppContext, project_id: str,
                                    tmp_path: Path) -> None:
    expected = _save_everything(context, project_id, tmp_path)
    copy = ProjectService(context).duplicate(project_id)
    with context.transaction() as tx:
        assert tx.projects.settings(copy.id) == expected
    assert copy.note == expected.note and copy.base_model == str(tmp_path)


def test_services_read_settings_only_through_the_repository() -> None:
    """No service reaches into a settings bag by key: each section is a typed value."""
    pattern = re.compile(r"settings\.get\(|settings\[|\.settings\s*=[^=]")
    offenders = [f"{path.name}:{number}" for path in sorted(SERVICES.rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []
