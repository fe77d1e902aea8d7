"""A large dataset file is read by a child process (`finetuneflow read-dataset`) while this one
stores the batches: the same rows must land as when this process reads the file itself, its
errors must read the same, and the child must never outlive the import."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from finetuneflow.core.dataset.formats import CsvColumns
from finetuneflow.core.progress import CancelToken
from finetuneflow.services import dataset_reader
from finetuneflow.services.context import AppContext
from finetuneflow.services.dataset_reader import IMPORT_BATCH, READER_COMMAND, READER_LOG
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.errors import UserError
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.import_batch import IMPORT_PART_BYTES
from tests.helpers.cli import REPO_ROOT, cli_env

ROWS = ("SELECT messages, status, reject_reason, content_hash, hash_key FROM dataset_examples "
        "WHERE project_id = ? ORDER BY id")


def _good(i: int) -> str:
    return json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                                    {"role": "assistant", "content": f"It is {i + 1}."}]})


def _mixed_file(path: Path, rows: int) -> None:
    """Good lines, and every few hundred a bad one: not JSON, not an object, a copy, a BOM, an
    example too long, a blank line, bytes that are not UTF-8."""
    too_long = json.dumps({"messages": [{"role": "user", "content": "Tell all."},
                                        {"role": "assistant", "content": "é" * 9000}]})
    odd = [b"{not json", b"[1, 2]", _good(3).encode(), b"\xef\xbb\xbf" + _good(-1).encode(),
           too_long.encode(), b"", b'{"messages": "\xff"}']
    with path.open("wb") as out:
        for i in range(rows):
            out.write((odd[i // 300 % len(odd)] if i % 300 == 299 else _good(i).encode()) + b"\n")


def _rows(context: AppContext, project_id: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(context.home.db_path) as db:
        return db.execute(ROWS, (project_id,)).fetchall()


def _readers() -> list[psutil.Process]:
    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it ended meanwhile
            if READER_COMMAND in process.cmdline():
                found.append(process)
    return found


def test_a_reader_process_stores_exactly_what_reading_here_stores(
        context: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two batches, several parts each, and every kind of bad line: row for row the same."""
    path = tmp_path / "mixed.jsonl"
    _mixed_file(path, IMPORT_BATCH + 30_000)
    service, projects = DatasetService(context), ProjectService(context)
    here, there = projects.create("Here").id, projects.create("There").id
    monkeypatch.setattr(dataset_reader, "CHILD_MIN_BYTES", path.stat().st_size + 1)
    read_here = service.import_file(here, path)
    monkeypatch.setattr(dataset_reader, "CHILD_MIN_BYTES", 0)
    read_there = service.import_file(there, path)
    assert read_here == read_there
    assert read_here.rejected > 100 and read_here.duplicates > 100
    stored = _rows(context, here)
    assert len(stored) == read_here.imported + read_here.rejected
    assert stored == _rows(context, there)
    assert path.stat().st_size > 2 * IMPORT_PART_BYTES  # more than one part per batch
    assert not _readers()


def test_the_reader_process_reads_csv_columns_and_a_system_prompt_as_asked(
        context: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The options travel to the child: named CSV columns and a system prompt."""
    path = tmp_path / "faq.csv"
    path.write_text("Frage;Antwort;Notiz\nWas ist 1+1?;2;\nWas ist 2+2?;4;x\n;leer;\n",
                    encoding="utf-8")
    columns = CsvColumns("Frage", "Antwort")
    service, projects = DatasetService(context), ProjectService(context)
    here, there = projects.create("Here").id, projects.create("There").id
    read_here = service.import_file(here, path, csv_columns=columns, system_prompt="Be brief.")
    monkeypatch.setattr(dataset_reader, "CHILD_MIN_BYTES", 0)
    read_there = service.import_file(there, path, csv_columns=columns, system_prompt="Be brief.")
    assert read_here == read_there
    assert (read_there.format, read_there.imported, read_there.rejected) == ("csv", 2, 1)
    assert _rows(context, here) == _rows(context, there)
    assert json.loads(str(_rows(context, there)[0][0]))[0] == {"role": "system",
                                                                "content": "Be brief."}


def test_a_file_that_is_no_dataset_reads_the_same_from_the_reader_process(
        context: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project_id = ProjectService(context).create("Prose").id
    path = tmp_path / "notes.jsonl"
    path.write_text("Dear diary, today I imported a dataset.\n" * 10, encoding="utf-8")
    service = DatasetService(context)
    with pytest.raises(UserError) as here:
        service.import_file(project_id, path)
    monkeypatch.setattr(dataset_reader, "CHILD_MIN_BYTES", 0)
    with pytest.raises(UserError) as there:
        service.import_file(project_id, path)
    assert str(here.value) == str(there.value)
    assert str(there.value).startswith("notes.jsonl: ")
    assert not _readers()


def test_a_reader_process_that_dies_ends_the_import_with_the_batches_stored(
        context: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader killed after the first batch was stored: the import fails with a message
    that says what happened and where the details are; the stored batch stays whole."""
    project_id = ProjectService(context).create("Crash").id
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(_good(i) for i in range(IMPORT_BATCH * 3)) + "\n",
                    encoding="utf-8")
    monkeypatch.setattr(dataset_reader, "CHILD_MIN_BYTES", 0)

    def kill_the_reader(fraction: float, message: str) -> None:
        for reader in _readers():
            reader.kill()

    with pytest.raises(UserError) as failed:
        DatasetService(context).import_file(project_id, path, progress=kill_the_reader)
    message = str(failed.value)
    assert message.startswith("Reading the dataset stopped unexpectedly (the reader process "
                              f"ended with code {-signal.SIGKILL}).")
    assert "The batches stored so far are kept" in message
    assert str(context.home.logs_dir / READER_LOG) in message
    assert len(_rows(context, project_id)) == IMPORT_BATCH
    assert not _readers()


def test_a_cancelled_import_ends_its_reader_process(
        context: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project_id = ProjectService(context).create("Cancel").id
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(_good(i) for i in range(IMPORT_BATCH * 3)) + "\n",
                    encoding="utf-8")
    monkeypatch.setattr(dataset_reader, "CHILD_MIN_BYTES", 0)
    cancel = CancelToken()
    readers: list[psutil.Process] = []

    def stop(fraction: float, message: str) -> None:
        readers.extend(_readers())
        cancel.cancel()

    summary = DatasetService(context).import_file(project_id, path, progress=stop,
                                                  cancel=cancel)
    assert summary.stopped and summary.imported == IMPORT_BATCH
    assert len(readers) == 1 and not readers[0].is_running()


def test_the_reader_command_started_by_hand_says_what_it_is() -> None:
    done = subprocess.run([sys.executable, "-m", "finetuneflow", READER_COMMAND], input="",
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
                          env=cli_env(REPO_ROOT / "unused-home"))
    assert done.returncode == 2
    assert "started by the app during a dataset import" in done.stderr


def test_a_reader_that_fails_sends_what_failed_after_what_it_read(tmp_path: Path) -> None:
    """A failure that is no dataset error (here the file is gone) ends the child's output with
    an `error` event naming it, which the parent raises as a UserError with the log's path."""
    request = dataset_reader.ReadRequest(str(tmp_path / "gone.jsonl"), "messages", None, None,
                                         1 << 20, 8192, 4)
    stdout = io.BytesIO()
    stdin = io.BytesIO(json.dumps(dataclasses.asdict(request)).encode() + b"\n")
    assert dataset_reader.serve(stdin, stdout) == 0
    *_, last = stdout.getvalue().splitlines()
    event = json.loads(last)
    assert (event["event"], event["kind"]) == ("error", "failed")
    assert event["message"].startswith("FileNotFoundError: ")


def test_a_failure_in_the_reader_process_reaches_the_import_as_its_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child cannot read the file (a folder here): the parent raises what failed and where
    the details are, and the child is gone."""
    monkeypatch.setattr(dataset_reader, "CHILD_MIN_BYTES", 0)
    request = dataset_reader.ReadRequest(str(tmp_path), "messages", None, None, 1 << 20, 8192, 4)
    log = tmp_path / "logs" / READER_LOG
    with pytest.raises(UserError) as failed, dataset_reader.reading(request, log) as (_, parts):
        list(parts)
    assert str(failed.value).startswith("Reading the dataset failed (IsADirectoryError: ")
    assert str(failed.value).endswith(f"The batches stored so far are kept. Details: {log}")
    assert "IsADirectoryError" in log.read_text(encoding="utf-8")  # the traceback
    assert not _readers()
