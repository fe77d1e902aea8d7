"""A failed ingest, training, export or chat says so everywhere: a non-zero exit with one line on
stderr, a `failed` job (`interrupted` for a killed trainer, which can resume), and the project
list's word for its latest job.

The real CLI in a child process, the real trainer child and the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cli import REPO_ROOT, cli_env, run_cli, run_cli_json
from tests.helpers.finished_run import arithmetic_chats


def latest_job(home: Path) -> tuple[str, str, str | None]:
    with sqlite3.connect(home / "finetuneflow.db") as db:
        return db.execute("SELECT kind, status, error FROM jobs ORDER BY id DESC LIMIT 1"
                          ).fetchone()


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed command; no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("finetuneflow: error: ") and "Traceback" not in result.stderr
    return errors[0]


def assert_listed_as(home: Path, project: str, kind: str, status: str) -> None:
    """`project list` says what the jobs table says, in --json and in words."""
    listed = {p["id"]: p for p in run_cli_json(home, "project", "list")}
    assert listed[project]["latest_job"] == {"kind": kind, "status": status}
    lines = run_cli(home, "project", "list").stdout.splitlines()
    assert any(line.startswith(project) and line.endswith(f"{kind} {status}") for line in lines)


def new_project(home: Path, model: Path) -> str:
    project: str = run_cli_json(home, "project", "create", "Failing")["id"]
    run_cli_json(home, "model", "set", project, str(model))
    return project


def broken_files(folder: Path) -> list[str]:
    folder.mkdir(exist_ok=True)
    pdf, docx = folder / "scan.pdf", folder / "letter.docx"
    pdf.write_bytes(b"<html>not a pdf</html>")
    docx.write_bytes(b"PK\x03\x04 a truncated archive")
    return [str(pdf), str(docx)]


def test_an_ingest_of_only_broken_files_fails(home: Path, tiny_model_dir: Path,
                                              tmp_path: Path) -> None:
    project = new_project(home, tiny_model_dir)
    result = run_cli(home, "ingest", project, *broken_files(tmp_path / "in"))
    line = error_line(result)
    assert "Could not add any of the 2 files" in line and "(and 1 more)" in line
    assert len(result.stdout.splitlines()) == 2  # each file's outcome is still listed
    kind, status, error = latest_job(home)
    assert (kind, status) == ("ingest", "failed")
    assert error is not None and error == line.removeprefix("finetuneflow: error: ")
    assert_listed_as(home, project, "ingest", "failed")
    as_json = run_cli(home, "ingest", project, *broken_files(tmp_path / "in"), "--json")
    error_line(as_json)
    assert [o["status"] for o in json.loads(as_json.stdout)] == ["error", "error"]


def test_an_ingest_of_no_supported_file_fails(home: Path, tiny_model_dir: Path,
                                              tmp_path: Path) -> None:
    project = new_project(home, tiny_model_dir)
    (tmp_path / "empty").mkdir()
    line = error_line(run_cli(home, "ingest", project, str(tmp_path / "empty")))
    assert "No supported files found" in line
    assert latest_job(home)[:2] == ("ingest", "failed")


def test_an_ingest_with_one_good_file_succeeds(home: Path, tiny_model_dir: Path,
                                               tmp_path: Path) -> None:
    project = new_project(home, tiny_model_dir)
    good = tmp_path / "in" / "notes.txt"
    paths = broken_files(tmp_path / "in")
    good.write_text("The pump in hall 3 is checked every 5 days.", encoding="utf-8")
    result = run_cli(home, "ingest", project, *paths, str(good))
    assert result.returncode == 0, result.stderr
    assert latest_job(home)[:2] == ("ingest", "succeeded")
    assert_listed_as(home, project, "ingest", "succeeded")


def test_training_a_broken_model_folder_fails(home: Path, tiny_model_dir: Path,
                                              tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    project = new_project(home, model)
    run_cli_json(home, "dataset", "import", project, str(arithmetic_chats(tmp_path / "d.jsonl")))
    (model / "model.safetensors").write_bytes(b"not weights")  # broken after it was chosen
    line = error_line(run_cli(home, "train", project, "--max-steps", "10", timeout=600))
    assert "Training failed" in line and "SafetensorError" in line
    kind, status, error = latest_job(home)
    assert (kind, status) == ("train", "failed") and error is not None and "\n" not in error
    with sqlite3.connect(home / "finetuneflow.db") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    assert_listed_as(home, project, "train", "failed")


def test_chat_and_export_without_a_run_fail(home: Path, tiny_model_dir: Path) -> None:
    project = new_project(home, tiny_model_dir)
    for command in (["chat", project, "Hello?"], ["export", project]):
        line = error_line(run_cli(home, *command))
        assert "no finished training run" in line and f"finetuneflow train {project}" in line
    with sqlite3.connect(home / "finetuneflow.db") as db:  # nothing was started
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, str]:
    """A home with one project trained for a few real steps (once for this module)."""
    root = tmp_path_factory.mktemp("trained")
    home = root / "home"
    project = new_project(home, tiny_model_dir)
    run_cli_json(home, "dataset", "import", project, str(arithmetic_chats(root / "d.jsonl")))
    result = run_cli(home, "train", project, "--preset", "quick", "--max-steps", "10",
                     timeout=900)
    assert result.returncode == 0, result.stderr
    return home, project


def test_export_and_chat_of_a_broken_adapter_fail(trained: tuple[Path, str]) -> None:
    home, project = trained
    adapter = next((home / "storage" / project / "artifacts").glob("adapter-*"))
    weights = adapter / "adapter_model.safetensors"
    saved = weights.read_bytes()
    weights.write_bytes(b"not weights")
    try:
        line = error_line(run_cli(home, "export", project, timeout=600))
        assert "Export failed" in line
        kind, status, error = latest_job(home)
        assert (kind, status) == ("export", "failed") and error is not None
        assert_listed_as(home, project, "export", "failed")
        chat = run_cli(home, "chat", project, "What is 2 plus 2?", timeout=600)
        assert "Chat failed" in error_line(chat) and chat.stdout.strip() == ""
    finally:
        weights.write_bytes(saved)


def trainer_children(parent: int) -> list[int]:
    """The trainer processes the CLI started (Linux: read from /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if int(fields.get("PPid", "0")) == parent and b"trainer" in cmdline:
            found.append(int(status.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
def test_a_killed_trainer_child_is_interrupted_everywhere(
        home: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Killed, the child leaves a resumable run: the CLI says so and exits 1, the job and the
    run are `interrupted`, and so is the project list's word."""
    project = new_project(home, tiny_model_dir)
    run_cli_json(home, "dataset", "import", project, str(arithmetic_chats(tmp_path / "d.jsonl")))
    cli = subprocess.Popen([sys.executable, "-m", "finetuneflow", "train", project,
                            "--preset", "quick", "--max-steps", "5000"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=cli_env(home), cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 600
        while not (children := trainer_children(cli.pid)) and time.monotonic() < deadline:
            assert cli.poll() is None, cli.communicate()
            time.sleep(0.2)
        assert children, "the trainer child never started"
        for child in children:
            os.kill(child, signal.SIGKILL)
        _out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 1, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert errors == ["finetuneflow: error: The training process ended unexpectedly; resume "
                      "with --resume."], err
    assert latest_job(home)[:2] == ("train", "interrupted")
    with sqlite3.connect(home / "finetuneflow.db") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    assert_listed_as(home, project, "train", "interrupted")
