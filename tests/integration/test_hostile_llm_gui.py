"""The Settings dialog edits the LLM answer limits; the LLM settings box warns before an API key
would cross the network in plain http. The real widgets, offscreen."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog
from pytestqt.qtbot import QtBot

from finetuneflow.core.generation import LLMSettings
from finetuneflow.gui.example_table import ExampleTableModel
from finetuneflow.gui.llm_settings_box import LLMSettingsBox
from finetuneflow.gui.settings_dialog import SettingsDialog
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.review import ReviewService
from finetuneflow.services.secrets import Secret, set_secret
from finetuneflow.services.settings import AppSettings


def test_the_answer_limits_are_shown_and_saved(qtbot: QtBot, context: AppContext) -> None:
    replace(AppSettings(), max_file_mb=42, llm_deadline_s=90.0).save(context.home)
    dialog = SettingsDialog(context)
    qtbot.addWidget(dialog)
    assert (dialog.llm_max_answer.value(), dialog.llm_max_line.value(),
            dialog.llm_deadline.value()) == (8, 1024, 90.0)

    dialog.llm_max_answer.setValue(16)
    dialog.llm_max_line.setValue(256)
    dialog.llm_deadline.setValue(120.5)
    dialog.save()

    assert dialog.result() == QDialog.DialogCode.Accepted
    saved = AppSettings.load(context.home)
    assert (saved.llm_max_answer_mb, saved.llm_max_line_kb, saved.llm_deadline_s) == (
        16, 256, 120.5)
    assert saved.max_file_mb == 42
    limits = saved.response_limits()
    assert (limits.max_answer_bytes, limits.max_line_bytes) == (16 * 2**20, 256 * 2**10)


@pytest.fixture
def box(qtbot: QtBot, context: AppContext) -> LLMSettingsBox:
    widget = LLMSettingsBox(context, LLMSettings(provider="openai",
                                                 base_url="http://127.0.0.1:8000/v1", model="m"))
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_a_typed_key_for_a_plain_http_server_elsewhere_is_warned_about(
        box: LLMSettingsBox) -> None:
    assert box.key_warning.isHidden()
    box.base_url.setText("http://10.0.0.5:8000/v1")
    assert box.key_warning.isHidden()  # no key yet: nothing would be sent
    box.key.setText("sk-typed")
    assert box.key_warning.isVisible()
    assert "unencrypted (plain http) to 10.0.0.5" in box.key_warning.text()
    box.base_url.setText("https://10.0.0.5/v1")
    assert box.key_warning.isHidden()


def test_a_saved_key_counts_and_loopback_gets_no_warning(qtbot: QtBot,
                                                         context: AppContext) -> None:
    set_secret(Secret.LLM_API_KEY, "sk-saved")
    widget = LLMSettingsBox(context, LLMSettings(provider="ollama",
                                                 base_url="http://gpu-box.lan:11434"))
    qtbot.addWidget(widget)
    widget.show()
    assert widget.key_warning.isVisible()
    assert "gpu-box.lan" in widget.key_warning.text()
    for url in ("http://localhost:11434", "http://127.0.0.1:11434", "http://[::1]:11434"):
        widget.base_url.setText(url)
        assert widget.key_warning.isHidden(), url


def test_the_review_table_shows_control_characters_as_escapes(
        qtbot: QtBot, context: AppContext, tmp_path: Path) -> None:
    project = ProjectService(context).create("Escapes")
    dataset = tmp_path / "hostile.jsonl"
    messages = [{"role": "user", "content": "\x1b[2J\u202eWhat is it? Really?"},
                {"role": "assistant", "content": "It is\x07 red\x1b[31m."}]
    dataset.write_text(json.dumps({"messages": messages}) + "\n", encoding="utf-8")
    DatasetService(context).import_file(project.id, dataset)

    model = ExampleTableModel(ReviewService(context), project.id)
    model.reload()
    prompt, reply = (model.data(model.index(0, column)) for column in (0, 1))
    assert prompt == "\\x1b[2J\\u202eWhat is it? Really?"
    assert reply == "It is\\x07 red\\x1b[31m."
    assert model.data(model.index(0, 0), Qt.ItemDataRole.ToolTipRole) == prompt
