"""Moving the home folder on real files: copy, verify, switch; refusals leave everything as it
was."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetuneflow.core.child_protocol import TrainJob
from finetuneflow.core.progress import Cancelled, CancelToken
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.settings import AppSettings
from finetuneflow.services.storage_move import move_home
from finetuneflow.storage.home import HOME_ENV, default_home, location_file
from finetuneflow.storage.tables import JobKind


@pytest.fixture
def project_id(context: AppContext, tmp_path: Path) -> str:
    """A project with a document, a finished job, a run's job file and an app setting."""
    project = ProjectService(context).create("Garden")
    document = tmp_path / "beds.txt"
    document.write_text("Raised beds are watered at dawn. " * 50, encoding="utf-8")
    IngestService(context).ingest(project.id, [document])
    jobs = JobService(context)
    jobs.succeed(jobs.create(project.id, JobKind.PREVIEW))
    home = context.home
    run = home.project_file(project.id, "artifacts", "run-1")
    TrainJob(run_id="1", model_path=str(tmp_path / "model"),
             train_path=str(home.project_file(project.id, "datasets", "train.jsonl")),
             eval_path=None, checkpoints_dir=str(run / "checkpoints"),
             adapter_dir=str(home.project_file(project.id, "artifacts", "adapter-1")),
             log_dir=str(run)).write(run / "job.json")
    AppSettings(default_preset="quick").save(home)
    return project.id


def test_move_copies_verifies_and_switches(context: AppContext, project_id: str,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    old = context.home.root
    before = ProjectService(context).list()
    target = tmp_path / "elsewhere" / "FineTuneFlow"
    target.parent.mkdir()
    seen: list[float] = []
    result = move_home(context, target, progress=lambda fraction, _text: seen.append(fraction))

    assert (result.old, result.new) == (old.resolve(), target.resolve())
    assert result.files > 5 and seen[-1] == 1.0
    assert context.home.root == target.resolve()
    assert ProjectService(context).list() == before
    assert [f.name for f in IngestService(context).list_files(project_id)] == ["beds.txt"]
    assert AppSettings.load(context.home).default_preset == "quick"
    job = TrainJob.read(context.home.project_file(project_id, "artifacts", "run-1", "job.json"))
    assert job.train_path.startswith(str(target.resolve()))
    assert job.adapter_dir.startswith(str(target.resolve()))
    assert job.model_path == str(tmp_path / "model")  # outside the home: left alone

    # New work lands in the new folder only; the old one is kept as it was.
    ProjectService(context).create("After the move")
    assert len(ProjectService(context).list()) == 2
    old_context = AppContext.open()  # FINETUNEFLOW_HOME still names the old folder
    assert [p.name for p in ProjectService(old_context).list()] == ["Garden"]
    old_context.close()

    # Start-up finds the new folder once no environment variable overrides it.
    assert location_file().is_file()
    monkeypatch.delenv(HOME_ENV)
    assert default_home() == target.resolve()


@pytest.mark.parametrize("where", ["inside", "not empty", "is a file"])
def test_bad_targets_are_refused(context: AppContext, project_id: str, tmp_path: Path,
                                 where: str) -> None:
    target = {"inside": context.home.root / "sub", "not empty": tmp_path,
              "is a file": tmp_path / "file"}[where]
    if where == "is a file":
        target.write_text("x", encoding="utf-8")
    with pytest.raises(UserError):
        move_home(context, target)
    assert not location_file().exists()
    assert ProjectService(context).get(project_id).name == "Garden"


def test_refused_while_a_job_runs(context: AppContext, project_id: str,
                                  tmp_path: Path) -> None:
    jobs = JobService(context)
    job_id = jobs.create(project_id, JobKind.GENERATE)
    jobs.start(job_id)
    target = tmp_path / "new-home"
    with pytest.raises(UserError, match="generate job is running"):
        move_home(context, target)
    assert not target.exists() and not location_file().exists()


def test_a_cancelled_move_removes_the_copy_and_keeps_working(
        context: AppContext, project_id: str, tmp_path: Path) -> None:
    old = context.home.root
    target = tmp_path / "empty"
    target.mkdir()
    cancel = CancelToken()

    def cancel_halfway(fraction: float, _text: str) -> None:
        if fraction > 0.3:
            cancel.cancel()

    with pytest.raises(Cancelled):
        move_home(context, target, progress=cancel_halfway, cancel=cancel)
    assert target.is_dir() and not any(target.iterdir())  # the person's folder stays, empty
    assert context.home.root == old and not location_file().exists()
    ProjectService(context).rename(project_id, "Still here")
    assert ProjectService(context).get(project_id).name == "Still here"


def test_a_recorded_folder_that_is_gone_falls_back_to_the_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finetuneflow.storage.home import platform_home, record_home

    gone = tmp_path / "unplugged-drive"
    gone.mkdir()
    record_home(gone)
    monkeypatch.delenv(HOME_ENV)
    assert default_home() == gone
    gone.rmdir()
    assert default_home() == platform_home()
