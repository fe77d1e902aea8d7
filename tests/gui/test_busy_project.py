"""A project whose job of one kind runs elsewhere (the CLI, another window): the page refuses a
second one with the same one-line message the command line prints, and nothing is written."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pytestqt.qtbot import QtBot

from finetuneflow.core.generation import LLMSettings
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.jobs import JobService
from finetuneflow.storage.tables import JobKind
from tests.helpers.fake_llm import FakeLLMServer
from tests.helpers.gui_projects import project_with_examples


def test_generation_is_refused_while_another_runs(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        tmp_path: Path, fake_llm: FakeLLMServer, answer_yes: list[str]) -> None:
    project_id = project_with_examples(window, context, tiny_model_dir, tmp_path, "Busy", 3)
    text = tmp_path / "valves.txt"
    text.write_text("Valves are checked every week by the duty engineer.\n" * 40,
                    encoding="utf-8")
    IngestService(context).ingest(project_id, [text])
    GenerationService(context).set_llm_settings(project_id, LLMSettings(
        provider="ollama", base_url=fake_llm.base_url, model="gpt-oss:20b"))
    jobs = JobService(context)
    running = jobs.create(project_id, JobKind.GENERATE)
    jobs.start(running)  # owned by this (living) process, as a CLI run would be
    with sqlite3.connect(context.home.db_path) as db:
        before = db.execute("SELECT COUNT(*) FROM dataset_examples").fetchone()[0]

    page = window.open_project(project_id, "review").currentPage()
    page.generate.click()
    qtbot.waitUntil(lambda: not page.runner.is_running("generate"), timeout=30_000)

    assert answer_yes[-1] == (f"“Busy” already has a generate job running (job {running}, "
                              f"process {os.getpid()}): wait for it or stop it first.")
    assert page.generate.isEnabled()
    with sqlite3.connect(context.home.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM dataset_examples").fetchone()[0] == before
        statuses = db.execute("SELECT status FROM jobs WHERE kind = 'generate'").fetchall()
    assert statuses == [("running",)]  # the refused one left no job behind
