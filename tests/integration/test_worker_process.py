"""Heavy service calls in the `finetuneflow worker` child: same results, errors, cancel, kills."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from finetuneflow.core.chunking import ChunkSettings
from finetuneflow.core.progress import CancelToken
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import Chunk, SourceFile
from tests.conftest import REPO_ROOT
from tests.helpers.documents import write_books
from tests.helpers.processes import gone, processes

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kills the worker with SIGKILL")

DOCUMENTS = ("pdf/normal_pdflatex_4pages.pdf", "docx/google-docs-export.docx",
             "txt/utf8_hebrew_rtl.txt", "txt/binary_jpeg_renamed.txt")


def new_project(context: AppContext, model: Path, name: str) -> str:
    project = ProjectService(context).create(name)
    ModelService(context).choose(project.id, str(model))
    return project.id


def worker_children(parent: int) -> list[int]:
    """Pids of `finetuneflow worker` processes whose parent is `parent`."""
    return [pid for pid, _command in processes(parent=parent, naming=[" worker"])]


def wait_until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_the_worker_gives_the_same_files_and_chunks_as_in_process(
        context: AppContext, tiny_model_dir: Path, corpus_dir: Path) -> None:
    service = IngestService(context)
    paths = [corpus_dir / name for name in DOCUMENTS]
    here = new_project(context, tiny_model_dir, "In process")
    there = new_project(context, tiny_model_dir, "In the worker")
    messages: list[str] = []

    local = service.ingest(here, paths)
    remote = service.ingest_in_worker(there, paths, progress=lambda _f, m: messages.append(m))

    assert [replace(o, file_id=None) for o in remote] == [replace(o, file_id=None)
                                                          for o in local]
    assert [o.status for o in remote] == ["ok", "ok", "ok", "error"]
    assert messages[0] == "Reading normal_pdflatex_4pages.pdf"
    assert messages[-1] == "4 of 4 files processed"
    with context.database.session() as session:
        def chunk_texts(project: str) -> list[str]:
            return list(session.scalars(select(Chunk.text).where(Chunk.project_id == project)
                                        .order_by(Chunk.file_id, Chunk.ordinal)))
        assert chunk_texts(there) == chunk_texts(here) and chunk_texts(here)


def test_a_user_error_in_the_worker_arrives_as_the_same_user_error(
        context: AppContext) -> None:
    with pytest.raises(UserError) as in_process:
        IngestService(context).ingest("no-such-project", [])
    with pytest.raises(UserError) as in_worker:
        IngestService(context).ingest_in_worker("no-such-project", [])
    assert str(in_worker.value) == str(in_process.value)


def test_re_cutting_chunks_in_the_worker(context: AppContext, tiny_model_dir: Path,
                                         corpus_dir: Path) -> None:
    service = IngestService(context)
    project = new_project(context, tiny_model_dir, "Re-cut")
    service.ingest(project, [corpus_dir / DOCUMENTS[0]])
    before = service.count_chunks(project)

    after = service.set_chunk_settings_in_worker(project, ChunkSettings(96, 16),
                                                 lambda _f, _m: None, CancelToken())

    assert after == service.count_chunks(project) > before
    assert service.chunk_settings(project) == ChunkSettings(96, 16)


def test_cancel_stops_the_worker_after_the_current_file(
        context: AppContext, tiny_model_dir: Path, tmp_path: Path) -> None:
    project = new_project(context, tiny_model_dir, "Cancelled")
    paths = write_books(tmp_path / "books", 6)
    cancel = CancelToken()

    def cancel_on_second_file(_fraction: float, message: str) -> None:
        if message == "Reading book-1.txt":
            cancel.cancel()

    outcomes = IngestService(context).ingest_in_worker(
        project, paths, progress=cancel_on_second_file, cancel=cancel)

    assert 1 <= len(outcomes) < len(paths)
    assert all(o.status == "ok" and o.chunks > 0 for o in outcomes)
    assert IngestService(context).list_files(project)[-1].chunks > 0  # no half-done file
    assert worker_children(os.getpid()) == []


def test_a_killed_worker_gives_a_clear_error_and_keeps_finished_files(
        context: AppContext, tiny_model_dir: Path, tmp_path: Path) -> None:
    project = new_project(context, tiny_model_dir, "Killed")
    paths = write_books(tmp_path / "books", 4)
    service = IngestService(context)

    def kill_on_third_file(_fraction: float, message: str) -> None:
        if message == "Reading book-2.txt":
            for pid in worker_children(os.getpid()):
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(UserError, match=r"Adding files stopped unexpectedly .* code -9"):
        service.ingest_in_worker(project, paths, progress=kill_on_third_file)

    files = service.list_files(project)
    assert [f.name for f in files][:2] == ["book-0.txt", "book-1.txt"]
    assert all(f.chunks > 0 for f in files[:2])
    # Adding them all again completes the set; the two finished ones are recognised.
    outcomes = service.ingest_in_worker(project, paths)
    assert [o.duplicate for o in outcomes][:2] == [True, True]
    assert [f.name for f in service.list_files(project)] == [p.name for p in paths]


def test_the_worker_stops_when_the_app_is_killed(context: AppContext, tiny_model_dir: Path,
                                                 tmp_path: Path, home: Path) -> None:
    project = new_project(context, tiny_model_dir, "Orphaned")
    paths = write_books(tmp_path / "books", 8)
    app = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from pathlib import Path
        from finetuneflow.services.context import AppContext
        from finetuneflow.services.ingest import IngestService
        IngestService(AppContext.open()).ingest_in_worker(
            {project!r}, [Path(p) for p in {[str(p) for p in paths]!r}])
        """)], cwd=REPO_ROOT, env=dict(os.environ, FINETUNEFLOW_HOME=str(home)))
    try:
        assert wait_until(lambda: worker_children(app.pid), 60)
        worker = worker_children(app.pid)[0]
        assert wait_until(lambda: file_count(context, project) >= 1, 120)
        app.kill()
        app.wait()
        assert wait_until(lambda: gone(worker), 120), "the worker went on without its app"
    finally:
        app.kill()
    assert file_count(context, project) < len(paths)
    assert all(f.chunks > 0 for f in IngestService(context).list_files(project))


def file_count(context: AppContext, project: str) -> int:
    with context.database.session() as session:
        return session.scalar(select(func.count()).select_from(SourceFile).where(
            SourceFile.project_id == project)) or 0


def test_a_new_model_re_cuts_the_chunks_in_the_worker(
        context: AppContext, tiny_model_dir: Path, corpus_dir: Path, tmp_path: Path) -> None:
    service = IngestService(context)
    project = new_project(context, tiny_model_dir, "New model")
    service.ingest(project, [corpus_dir / DOCUMENTS[0]])
    other_model = tmp_path / "same-tokenizer-elsewhere"
    shutil.copytree(tiny_model_dir, other_model)
    messages: list[str] = []

    ModelService(context).choose(project, str(other_model), rechunk=lambda p: (
        service.rechunk_in_worker(p, lambda _f, m: messages.append(m))))

    assert messages[0] == "Cutting chunks" and service.count_chunks(project) > 0
    empty = new_project(context, tiny_model_dir, "No files: no worker started")
    assert service.rechunk_in_worker(empty, lambda _f, m: messages.append(m)) == 0
    assert messages == ["Cutting chunks"]


def test_the_worker_started_by_hand_says_what_it_is(home: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "finetuneflow", "worker"], input="",
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
                            env=dict(os.environ, FINETUNEFLOW_HOME=str(home)))
    assert result.returncode == 2
    assert result.stderr.strip() == ("finetuneflow worker is started by the app: it reads one "
                                     "JSON request on stdin.")
