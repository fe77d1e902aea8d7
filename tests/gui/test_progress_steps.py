"""How far a project is: the projects list's Step column and the wizard's check marks follow
what the project has made (its rows and files), not the page visited last."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from finetuneflow.core.steps import (
    STEP_KEYS,
    STEPS,
    ProgressFacts,
    completed_steps,
    furthest_completed,
)
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.wizard_frame import DONE_MARK
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.quick_read import read_progress
from finetuneflow.storage.tables import JobKind


def step_cell(window: MainWindow) -> str:
    window.dashboard.refresh()
    return window.dashboard.table.item(0, 2).text()


def facts_from_database(db: Path, home: Path, project_id: str) -> ProgressFacts:
    """The same facts read with plain SQL, to check the repository's reading of them."""
    with sqlite3.connect(db) as con:
        def count(sql: str) -> int:
            return int(con.execute(sql, (project_id,)).fetchone()[0])
        model, task, training = con.execute(
            "SELECT base_model_folder, task_config, training FROM projects WHERE id = ?",
            (project_id,)).fetchone()
        kept = "status != 'rejected' AND split != 'preview'"
        return ProgressFacts(
            model_chosen=model is not None, task_chosen=bool(json.loads(task or "{}")),
            documents=count("SELECT COUNT(DISTINCT file_id) FROM chunks WHERE project_id = ?"),
            preview_examples=count("SELECT COUNT(*) FROM dataset_examples WHERE project_id = ? "
                                   "AND split = 'preview'"),
            generated_examples=count(f"SELECT COUNT(*) FROM dataset_examples WHERE "
                                     f"project_id = ? AND {kept} AND source != 'imported'"),
            imported_examples=count(f"SELECT COUNT(*) FROM dataset_examples WHERE "
                                    f"project_id = ? AND {kept} AND source = 'imported'"),
            dataset_written=(home / "storage" / project_id / "datasets" / "train.jsonl").is_file(),
            training_set=training is not None,
            runs_succeeded=count("SELECT COUNT(*) FROM runs WHERE project_id = ? "
                                 "AND status = 'succeeded'"),
            exports=count("SELECT COUNT(*) FROM jobs WHERE project_id = ? AND kind = 'export' "
                          "AND status = 'succeeded'"))


def test_furthest_completed_step_rules() -> None:
    assert furthest_completed(ProgressFacts()) == -1
    assert completed_steps(ProgressFacts(imported_examples=3)) == {"data", "preview"}
    assert STEP_KEYS[furthest_completed(ProgressFacts(model_chosen=True, exports=1))] == "export"


def test_step_column_and_marks_follow_the_database(window: MainWindow, context: AppContext,
                                                   home: Path, tiny_model_dir: Path,
                                                   tmp_path: Path) -> None:
    project = window.dashboard.create_project("Garden")
    db = context.home.db_path

    def check(expected: str) -> None:
        from finetuneflow.services.progress import ProgressService
        facts = ProgressService(context).of(project.id)
        assert facts == facts_from_database(db, context.home.root, project.id)
        # The window's first paint reads the same facts without SQLAlchemy.
        assert read_progress(db, context.home.storage_dir) == ProgressService(context).all()
        assert step_cell(window) == expected

    check("Not started")
    ProjectService(context).set_step(project.id, "review")  # a visit is not progress
    check("Not started")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    check("1. Model")
    document = tmp_path / "beds.txt"
    document.write_text("Raised beds are watered at dawn. " * 40, encoding="utf-8")
    IngestService(context).ingest(project.id, [document])
    check("3. Data")
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text("\n".join(json.dumps({"messages": [
        {"role": "user", "content": f"When are the beds watered, case {n}?"},
        {"role": "assistant", "content": f"At dawn ({n})."}]}) for n in range(12)),
        encoding="utf-8")
    DatasetService(context).import_file(project.id, dataset)
    check("4. Preview")
    DatasetService(context).export(project.id)
    check("5. Review")
    jobs = JobService(context)
    jobs.fail(jobs.create(project.id, JobKind.EXPORT), "no run")  # a failed export is not one
    check("5. Review")

    window.open_project(project.id)
    items = [window.wizard.steps.item(row).text() for row in range(len(STEP_KEYS))]
    marked = [text.split(". ")[1] for text in items if text.startswith(DONE_MARK)]
    done = completed_steps(facts_from_database(db, context.home.root, project.id))
    assert marked == [step.title for step in STEPS if step.key in done]
    assert {"model", "data", "preview", "review"} <= done and "train" not in done
    window.wizard.grab().save("/tmp/pages_shots/wizard_marks.png")


def test_a_failed_generation_reads_failed(window: MainWindow, context: AppContext) -> None:
    project = window.dashboard.create_project("Garden")
    jobs = JobService(context)
    jobs.fail(jobs.create(project.id, JobKind.GENERATE), "Could not connect to the LLM")
    window.dashboard.refresh()
    assert window.dashboard.table.item(0, 4).text() == "Generation failed"
    assert window.dashboard.table.item(0, 4).font().bold()


def test_the_sample_note_follows_the_project(window: MainWindow, context: AppContext,
                                             tiny_model_dir: Path, tmp_path: Path) -> None:
    from finetuneflow.services.samples import EXPORTED, TRAINED, SampleService, sample_note

    project = SampleService(context).create(hf_cache=tmp_path / "empty-cache")
    window.dashboard.refresh(project.id)
    assert "choose a base model" in window.dashboard.note.text()
    ModelService(context).choose(project.id, str(tiny_model_dir))
    window.dashboard.refresh(project.id)
    note = window.dashboard.note.text()
    assert "choose a base model" not in note and "Hardware (step 6)" in note
    assert "tiny" in note  # the model chosen, by name
    page = window.open_project(project.id, "model").currentPage()
    assert page.project_note.text() == note
    trained = ProgressFacts(model_chosen=True, imported_examples=5, runs_succeeded=1)
    assert TRAINED in sample_note(trained, "m") and "5 reviewed" in sample_note(trained, "m")
    exported = sample_note(ProgressFacts(model_chosen=True, runs_succeeded=1, exports=1), "m")
    assert EXPORTED in exported and "needs an LLM" not in exported
