"""App-wide settings on a real home: saved, reloaded, and used by projects that have none."""

from __future__ import annotations

import json

import pytest

from finetuneflow.core.generation import LLMSettings
from finetuneflow.core.training.config import preset_config
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.settings import SETTINGS_FILE, AppSettings
from finetuneflow.services.training import TrainingService

LOCAL = LLMSettings(provider="ollama", base_url="http://127.0.0.1:11434", model="qwen3:4b",
                    concurrency=2)


def test_defaults_round_trip(context: AppContext) -> None:
    settings = AppSettings(default_preset="quick", max_file_mb=50).with_default_llm(LOCAL)
    settings.save(context.home)
    loaded = AppSettings.load(context.home)
    assert loaded == settings and loaded.default_llm() == LOCAL
    stored = json.loads((context.home.root / SETTINGS_FILE).read_text("utf-8"))
    assert stored["default_preset"] == "quick" and stored["llm"]["model"] == "qwen3:4b"


def test_bad_values_are_refused_and_a_bad_file_falls_back(context: AppContext) -> None:
    with pytest.raises(UserError, match="Unknown training preset"):
        AppSettings(default_preset="fastest").save(context.home)
    with pytest.raises(UserError, match="base URL"):
        AppSettings().with_default_llm(LLMSettings(provider="openai", base_url="nope",
                                                   model="m")).save(context.home)
    (context.home.root / SETTINGS_FILE).write_text('{"default_preset": "fastest"}', "utf-8")
    assert AppSettings.load(context.home) == AppSettings()


def test_a_project_without_llm_settings_uses_the_app_default(context: AppContext) -> None:
    project = ProjectService(context).create("Defaults")
    generation = GenerationService(context)
    assert generation.llm_settings(project.id) == LLMSettings()
    AppSettings().with_default_llm(LOCAL).save(context.home)
    assert generation.llm_settings(project.id) == LOCAL
    own = LOCAL.with_changes(model="llama3.2:3b")
    generation.set_llm_settings(project.id, own)
    AppSettings().save(context.home)
    assert generation.llm_settings(project.id) == own  # a project's own choice stays


def test_a_new_project_trains_with_the_default_preset(context: AppContext) -> None:
    project = ProjectService(context).create("Preset")
    training = TrainingService(context)
    assert training.config_for(project.id) == preset_config("balanced")
    AppSettings(default_preset="quick").save(context.home)
    assert training.config_for(project.id) == preset_config("quick")
    training.save_config(project.id, preset_config("thorough"))
    assert training.config_for(project.id) == preset_config("thorough")
