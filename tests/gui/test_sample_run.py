"""A first-time user with no LLM key: the sample project trains and exports with only the
model download (the tiny model stands in for it), through the real pages and trainer child."""

from __future__ import annotations

import sqlite3
import zipfile
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.context import AppContext
from finetuneflow.services.samples import SampleService
from finetuneflow.services.training import TrainingService
from tests.gui.test_end_to_end import next_page, train_then_export

pytestmark = pytest.mark.slow


def test_the_sample_trains_and_exports_without_an_llm(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    project = SampleService(context).create(model=str(tiny_model_dir))
    window.dashboard.refresh(project.id)
    window.open_project(project.id)
    assert window.wizard.current_step_key() == "review"  # documents and examples are ready
    page = window.wizard.currentPage()
    qtbot.waitUntil(page.isComplete, timeout=30_000)

    page = next_page(window, "hardware")  # Next writes the dataset files
    qtbot.waitUntil(page.isComplete, timeout=120_000)
    training = TrainingService(context)
    training.save_config(project.id, training.config_for(project.id, preset="quick").replace(
        max_steps=6, logging_steps=2, eval_steps=3, save_steps=3))

    exported = train_then_export(window, qtbot, context, project.id, steps=6)
    assert any(name.endswith("adapter/adapter_model.safetensors")
               for name in zipfile.ZipFile(exported).namelist())

    datasets = context.home.project_subdir(project.id, "datasets")
    written = sum(len((datasets / name).read_text(encoding="utf-8").splitlines())
                  for name in ("train.jsonl", "eval.jsonl"))
    with sqlite3.connect(context.home.db_path) as db:
        kept = db.execute("SELECT COUNT(*) FROM dataset_examples WHERE project_id = ? AND "
                          "status != 'rejected'", (project.id,)).fetchone()[0]
        kinds = [row[0] for row in db.execute(
            "SELECT DISTINCT kind FROM jobs WHERE project_id = ? ORDER BY kind", (project.id,))]
    assert written == kept >= 55  # every reviewed example was trained on or held out
    assert kinds == ["export", "ingest", "train"]  # no LLM was asked for anything
