"""A project brought back from its folder after its database was deleted and recreated: every
count checked against SQL, through the service and through the CLI in a child process."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetuneflow.core.child_protocol import FinishedEvent, StoppedEvent, TrainJob, encode
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.errors import UserError
from finetuneflow.services.finished_runs import FinishedRuns
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.restore import RestoreService
from finetuneflow.storage.home import MANIFEST
from tests.helpers.cli import run_cli, run_cli_json
from tests.helpers.finished_run import SYSTEM, arithmetic_chats, train

RUN_ID = 7
NOTE = "Keep the answers short."


def _write_run(context: AppContext, project_id: str, run_id: int, event: object) -> None:
    """A run's files as the trainer leaves them: job.json, events.jsonl, the adapter."""
    home = context.home
    folder = home.project_file(project_id, "artifacts", f"run-{run_id}")
    adapter = home.project_file(project_id, "artifacts", f"adapter-{run_id}")
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    folder.mkdir(parents=True)
    TrainJob(run_id=str(run_id), model_path="/models/tiny", train_path="t.jsonl",
             eval_path=None, checkpoints_dir=str(folder / "checkpoints"),
             adapter_dir=str(adapter), log_dir=str(folder),
             config={"lora_r": 8}).write(folder / "job.json")
    (folder / "events.jsonl").write_text(
        json.dumps({"type": "status", "message": "Loading"}) + "\n" + encode(event) + "\n",
        encoding="utf-8")


def _build_project(context: AppContext, tmp_path: Path, model_dir: Path) -> str:
    """A project with settings, three documents, an exported dataset, a finished run and a
    stopped one."""
    project_id = ProjectService(context).create("Garden").id
    ModelService(context).choose(project_id, str(model_dir))
    GenerationService(context).set_task(project_id, "qa", system_prompt=SYSTEM)
    ProjectService(context).set_note(project_id, NOTE)
    documents = tmp_path / "documents"
    documents.mkdir()
    for index in range(3):
        (documents / f"notes {index}.txt").write_text(
            "\n\n".join(f"Bed {index}, row {n}: water the roses at dawn." for n in range(80)),
            encoding="utf-8")
    IngestService(context).ingest(project_id, [documents])
    DatasetService(context).import_file(project_id, arithmetic_chats(tmp_path / "a.jsonl", 60))
    DatasetService(context).export(project_id)
    adapter = str(context.home.project_file(project_id, "artifacts", f"adapter-{RUN_ID}"))
    _write_run(context, project_id, RUN_ID, FinishedEvent(step=6, adapter_dir=adapter,
                                                          train_loss=0.5))
    _write_run(context, project_id, RUN_ID + 1, StoppedEvent(step=2, checkpoint=None))
    return project_id


def _counts(db_path: Path, project_id: str) -> dict[str, int]:
    with sqlite3.connect(db_path) as db:
        return {table: db.execute(f"SELECT count(*) FROM {table} WHERE project_id = ?",
                                  (project_id,)).fetchone()[0]
                for table in ("files", "chunks", "dataset_examples", "runs")}


def _lose_database(context: AppContext) -> AppContext:
    """Delete the database, as a person might, and start again with a new, empty one."""
    context.close()
    for path in context.home.root.glob("finetuneflow.db*"):
        path.unlink()
    return AppContext.open(context.home)


@pytest.fixture
def restored_home(context: AppContext, tmp_path: Path, tiny_model_dir: Path
                  ) -> Iterator[tuple[AppContext, str, dict[str, int]]]:
    project_id = _build_project(context, tmp_path, tiny_model_dir)
    before = _counts(context.home.db_path, project_id)
    fresh = _lose_database(context)
    yield fresh, project_id, before
    fresh.close()


def test_the_service_restores_what_the_folder_holds(
        restored_home: tuple[AppContext, str, dict[str, int]], tiny_model_dir: Path) -> None:
    context, project_id, before = restored_home
    assert ProjectService(context).list() == []
    service = RestoreService(context)
    assert [(o.id, o.name) for o in service.orphans()] == [(project_id, "Garden")]

    result = service.restore(project_id[:8])

    after = _counts(context.home.db_path, project_id)
    assert before == {"files": 3, "chunks": before["chunks"], "dataset_examples": 60, "runs": 0}
    assert after == {"files": 3, "chunks": before["chunks"], "dataset_examples": 60, "runs": 1}
    assert (result.documents, result.chunks, result.examples, result.runs) == (
        3, before["chunks"], 60, 1)
    names = sorted(file.name for file in IngestService(context).list_files(project_id))
    assert names == ["notes 0.txt", "notes 1.txt", "notes 2.txt"]  # as the person added them
    assert not any("original names" in item for item in result.not_restored)
    assert any("review state of examples" in item for item in result.not_restored)
    assert any(item.startswith(f"run {RUN_ID + 1}: it did not finish")
               for item in result.not_restored)
    settings = ProjectService(context).get(project_id)
    assert settings.name == "Garden" and settings.note == NOTE
    assert ModelService(context).current(project_id).folder == tiny_model_dir
    assert GenerationService(context).task_settings(project_id).system_prompt == SYSTEM
    with context.transaction() as tx:
        run = tx.runs.get(RUN_ID)
        assert run is not None and run.metrics["train_loss"] == 0.5
        assert run.artifacts["adapter"].endswith(f"adapter-{RUN_ID}")
    assert service.orphans() == []
    raw = context.home.project_subdir(project_id, "raw")
    assert len([p for p in raw.iterdir() if p.suffix == ".txt"]) == 3  # read again, not copied


def test_a_really_trained_run_comes_back_ready_to_export(
        context: AppContext, tmp_path: Path, tiny_model_dir: Path) -> None:
    project_id = ProjectService(context).create("Trained").id
    ModelService(context).choose(project_id, str(tiny_model_dir))
    DatasetService(context).import_file(project_id, arithmetic_chats(tmp_path / "a.jsonl"))
    adapter = train(context, project_id)
    [run_id] = FinishedRuns(context).ids(project_id)
    with context.transaction() as tx:
        recorded = tx.runs.get(run_id)
        assert recorded is not None
        metrics, artifacts = dict(recorded.metrics), dict(recorded.artifacts)
    context = _lose_database(context)
    try:
        result = RestoreService(context).restore(project_id)
        assert result.runs == 1 and result.examples == 100
        run = FinishedRuns(context).get(project_id)
        assert (run.id, run.adapter_dir, run.record_metrics) == (run_id, adapter, metrics)
        with context.transaction() as tx:
            restored = tx.runs.get(run_id)
            assert restored is not None and dict(restored.artifacts) == artifacts
    finally:
        context.close()


def test_a_project_the_database_lists_is_refused(context: AppContext) -> None:
    project_id = ProjectService(context).create("Listed").id
    with pytest.raises(UserError, match="“Listed”, which the database lists"):
        RestoreService(context).restore(project_id)
    with pytest.raises(UserError, match="No project folder 'nothing-here'"):
        RestoreService(context).restore("nothing-here")
    assert len(ProjectService(context).list()) == 1


def test_a_broken_manifest_says_so_and_a_name_restores_it(context: AppContext) -> None:
    project_id = ProjectService(context).create("Broken").id
    context = _lose_database(context)
    try:
        manifest = context.home.project_dir(project_id) / MANIFEST
        manifest.write_text("{not json", encoding="utf-8")
        service = RestoreService(context)
        [orphan] = service.orphans()
        assert orphan.name is None and orphan.manifest_problem.startswith(
            f"its {MANIFEST} is not valid JSON")
        with pytest.raises(UserError, match=f"its {MANIFEST} is not valid JSON.*--name NAME"):
            service.restore(project_id)
        assert ProjectService(context).list() == []
        result = service.restore(project_id, "Mended")
        assert result.name == "Mended" and "the defaults apply" in result.not_restored[0]
        assert [p.name for p in ProjectService(context).list()] == ["Mended"]
        assert json.loads(manifest.read_text("utf-8"))["name"] == "Mended"
    finally:
        context.close()


def test_examples_not_written_to_training_files_are_named(
        context: AppContext, tmp_path: Path, tiny_model_dir: Path) -> None:
    project_id = ProjectService(context).create("Unwritten").id
    ModelService(context).choose(project_id, str(tiny_model_dir))
    (tmp_path / "notes.md").write_text("# Roses\n\nWater them at dawn.", encoding="utf-8")
    IngestService(context).ingest(project_id, [tmp_path / "notes.md"])
    context = _lose_database(context)
    try:
        result = RestoreService(context).restore(project_id)
        assert (result.documents, result.examples) == (1, 0)
        assert "examples not yet written to the training files in datasets/ (they were only " \
               "in the database)" in result.not_restored
    finally:
        context.close()


def test_settings_and_document_names_are_recorded_in_the_folder(
        context: AppContext, tmp_path: Path) -> None:
    project_id = ProjectService(context).create("Recorded").id
    path = context.home.project_dir(project_id) / MANIFEST
    assert json.loads(path.read_text("utf-8")) == {
        "id": project_id, "name": "Recorded", "settings": {}, "files": {}}
    ProjectService(context).set_note(project_id, NOTE)
    ProjectService(context).rename(project_id, "Renamed")
    (tmp_path / "Pump manual (v2).md").write_text("# Pumps\n\nCheck them.", encoding="utf-8")
    [added] = IngestService(context).ingest(project_id, [tmp_path / "Pump manual (v2).md"])
    manifest = json.loads(path.read_text("utf-8"))
    assert manifest["id"] == project_id and manifest["name"] == "Renamed"
    assert manifest["settings"]["note"] == NOTE
    [(stored, original)] = manifest["files"].items()
    assert original == "Pump manual (v2).md" and stored.startswith("raw/")
    assert (context.home.project_dir(project_id) / stored).is_file()
    IngestService(context).remove_file(project_id, added.file_id)
    assert json.loads(path.read_text("utf-8"))["files"] == {}


def _project_whose_database_is_deleted(home: Path, tmp_path: Path, model_dir: Path
                                       ) -> tuple[str, dict[str, int]]:
    """A project built in the home folder, then its database deleted: (its id, its counts)."""
    context = AppContext.open()
    try:
        project_id = _build_project(context, tmp_path, model_dir)
        before = _counts(context.home.db_path, project_id)
    finally:
        context.close()
    for path in home.glob("finetuneflow.db*"):
        path.unlink()
    return project_id, before


def test_the_cli_restores_after_the_database_is_deleted(
        home: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    project_id, before = _project_whose_database_is_deleted(home, tmp_path, tiny_model_dir)
    assert run_cli_json(home, "project", "list") == []
    doctor = run_cli(home, "doctor")
    assert f"finetuneflow project restore {project_id}" in doctor.stdout

    result = run_cli_json(home, "project", "restore",
                          str(home / "storage" / project_id))

    assert {key: result[key] for key in ("project_id", "name", "documents", "examples",
                                         "runs")} == {
        "project_id": project_id, "name": "Garden", "documents": 3, "examples": 60, "runs": 1}
    assert _counts(home / "finetuneflow.db", project_id) == {**before, "runs": 1}
    assert result["chunks"] == before["chunks"]
    assert run_cli_json(home, "doctor")["orphan_folders"] == []
    again = run_cli(home, "project", "restore", project_id)
    assert again.returncode == 1 and "which the database lists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert _counts(home / "finetuneflow.db", project_id) == {**before, "runs": 1}


def test_the_cli_names_a_broken_manifest_in_one_line(home: Path) -> None:
    project_id = run_cli_json(home, "project", "create", "Pumps")["id"]
    for path in home.glob("finetuneflow.db*"):
        path.unlink()
    (home / "storage" / project_id / MANIFEST).unlink()
    refused = run_cli(home, "project", "restore", project_id)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert f"its {MANIFEST} is missing" in refused.stderr and "--name NAME" in refused.stderr
    report = json.loads(run_cli(home, "doctor", "--json").stdout)
    assert report["orphan_folders"][0]["manifest_problem"] == f"its {MANIFEST} is missing"
    restored = run_cli_json(home, "project", "restore", project_id, "--name", "Pumps again")
    assert restored["name"] == "Pumps again"
    assert [p["name"] for p in run_cli_json(home, "project", "list")] == ["Pumps again"]


def test_a_restore_killed_part_way_is_listed_and_runs_again_in_full(
        home: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    """kill -9 once the project's row is written: the rows are incomplete and the manifest may
    have been rewritten from them. Doctor still lists the folder, and a second restore starts
    again from what the folder first said and ends with everything."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers.cli import REPO_ROOT, cli_env

    project_id, before = _project_whose_database_is_deleted(home, tmp_path, tiny_model_dir)
    run_cli_json(home, "project", "list")  # a new, empty database
    child = subprocess.Popen([sys.executable, "-m", "finetuneflow", "project", "restore",
                              project_id], env=cli_env(home), cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, written = time.monotonic() + 120, 0
    while not written and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        with sqlite3.connect(home / "finetuneflow.db", timeout=30) as db:
            written = db.execute("SELECT COUNT(*) FROM projects").fetchone()[0]
    assert child.poll() is None, "the restore ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert _counts(home / "finetuneflow.db", project_id)["runs"] == 0  # stopped part way

    doctor = run_cli(home, "doctor", "--json")
    assert doctor.returncode == 1  # a problem found
    assert [folder["id"] for folder in json.loads(doctor.stdout)["orphan_folders"]] == [
        project_id]
    result = run_cli_json(home, "project", "restore", project_id)

    assert (result["name"], result["documents"], result["examples"], result["runs"]) == (
        "Garden", 3, 60, 1)
    assert _counts(home / "finetuneflow.db", project_id) == {**before, "runs": 1}
    assert run_cli_json(home, "doctor")["orphan_folders"] == []
    names = json.loads((home / "storage" / project_id / MANIFEST).read_text())["files"]
    assert sorted(names.values()) == ["notes 0.txt", "notes 1.txt", "notes 2.txt"]


def test_two_restores_of_one_folder_at_once_are_refused_and_a_dead_claim_is_taken_over(
        restored_home: tuple[AppContext, str, dict[str, int]]) -> None:
    """A second restore while one runs would take the first one's rows for those of a stopped
    restore and delete them: it is refused. A claim left by a killed restore is not a lock."""
    import subprocess
    import sys

    from finetuneflow.services.restore import RESTORE_CLAIM

    context, project_id, before = restored_home
    claim = context.home.project_dir(project_id) / RESTORE_CLAIM
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim.write_text(str(other.pid), encoding="utf-8")
        with pytest.raises(UserError, match=f"being restored by another .*\\({other.pid}\\)"):
            RestoreService(context).restore(project_id)
        assert ProjectService(context).list() == []  # nothing written
    finally:
        other.kill()
        other.wait()

    result = RestoreService(context).restore(project_id)  # the claim's process is gone

    assert (result.documents, result.examples) == (3, 60)
    assert _counts(context.home.db_path, project_id) == {**before, "runs": 1}
    assert not claim.exists()
    assert not list(claim.parent.glob(RESTORE_CLAIM + ".*"))
