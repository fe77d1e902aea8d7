"""Which latest run the app offers to reattach to, and a reattach refused before any job
exists: a run's folder as a lost connection, a torn file or a removed machine leaves it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from finetuneflow.core.errors import NotFoundError
from finetuneflow.services.context import AppContext
from finetuneflow.services.jobs import JobService
from finetuneflow.services.machines import add_machine, remove_machine
from finetuneflow.services.remote_follow import prepare_reattach, reattachable
from finetuneflow.services.remote_training import RemoteState
from finetuneflow.services.training import TrainingService
from finetuneflow.storage.tables import JobKind, JobStatus
from tests.integration.test_training_service import training_project


@pytest.fixture
def project(home: Path, tiny_model_dir: Path, tmp_path: Path) -> str:
    return training_project(home, tiny_model_dir, tmp_path)


def test_only_an_unfollowed_run_on_an_existing_machine_is_offered(
        context: AppContext, project: str, tmp_path: Path) -> None:
    training = TrainingService(context)
    jobs = JobService(context)
    assert reattachable(context, project) is None  # no run yet
    prepared = training.prepare(project, training.config_for(project, "quick"))
    jobs.start(prepared.job_id)
    run_dir = prepared.job_path.parent
    RemoteState("box", "/there/run-1", "/there/run-1/adapter", offset=120).save(run_dir)
    assert reattachable(context, project) is None  # this process follows it
    jobs.interrupt(prepared.job_id, "Lost the connection to box")
    assert reattachable(context, project) == "box"

    # Its machine was removed: refused before a job is made, the run left as it was.
    with pytest.raises(NotFoundError, match="No machine is named 'box'"):
        prepare_reattach(context, project)
    assert jobs.latest(project, JobKind.TRAIN).id == prepared.job_id  # type: ignore[union-attr]
    key = tmp_path / "key"
    key.write_text("only its path is kept")
    add_machine(context.home, "box", "ssh://alice@127.0.0.1:2", key=str(key),
                python=sys.executable)
    again, machine = prepare_reattach(context, project)
    assert machine == "box" and again.run_id == prepared.run_id
    assert again.job_id != prepared.job_id
    jobs.interrupt(again.job_id, "Lost the connection to box")
    remove_machine(context.home, "box")

    (run_dir / "remote.json").write_text("{torn")  # a crash while it was written
    assert reattachable(context, project) is None
    (run_dir / "remote.json").write_text(json.dumps({"machine": "box", "unknown": 1}))
    assert reattachable(context, project) is None
    (run_dir / "remote.json").unlink()  # trained here: nothing to reattach to
    assert reattachable(context, project) is None
    RemoteState("box", "/there/run-1", "/there/run-1/adapter").save(run_dir)
    jobs.fail(again.job_id, "The trainer on box ended without finishing")
    assert reattachable(context, project) is None  # it ended there
    assert jobs.latest(project, JobKind.TRAIN).status is JobStatus.FAILED  # type: ignore[union-attr]
