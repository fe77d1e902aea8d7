"""Documents: a file is recorded with all its chunks or not at all, even under kill -9; files an
older version left half-added are finished; adding documents is an `ingest` job."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.ingest import COPY_MISSING, TEST_PAUSE_VARIABLE, IngestService
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.db import upgrade_to_head
from finetuneflow.storage.tables import Chunk, Job, JobKind, JobStatus, SourceFile
from tests.helpers.cli import REPO_ROOT, cli_env, run_cli
from tests.helpers.documents import write_books
from tests.helpers.migrations import database_at
from tests.integration.test_migrations import _count, _seed_family

PDF = "pdf/normal_pdflatex_4pages.pdf"
JPEG = "txt/binary_jpeg_renamed.txt"


def project_with_model(context: AppContext, model: Path) -> str:
    project = ProjectService(context).create("Documents")
    ModelService(context).choose(project.id, str(model))
    return project.id


def files_and_chunks(context: AppContext, project: str) -> list[tuple[str, int]]:
    with context.database.session() as session:
        rows = session.execute(
            select(SourceFile.original_name, func.count(Chunk.id))
            .outerjoin(Chunk, Chunk.file_id == SourceFile.id)
            .where(SourceFile.project_id == project)
            .group_by(SourceFile.id).order_by(SourceFile.id)).all()
    return [(name, count) for name, count in rows]


def ingest_jobs(context: AppContext) -> list[JobStatus]:
    with context.database.session() as session:
        return list(session.scalars(select(Job.status).where(Job.kind == JobKind.INGEST)
                                    .order_by(Job.id)))


def test_the_cli_prints_what_it_printed_before(context: AppContext, home: Path,
                                               tiny_model_dir: Path, corpus_dir: Path) -> None:
    project = project_with_model(context, tiny_model_dir)
    pdf, jpeg = corpus_dir / PDF, corpus_dir / JPEG

    first = run_cli(home, "ingest", project, str(pdf), str(jpeg))
    again = run_cli(home, "ingest", project, str(pdf), "--json")

    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert first.stdout == (
        "normal_pdflatex_4pages.pdf\tok\t-\tpages=4\tchars=14477\tchunks=24\n"
        "binary_jpeg_renamed.txt\terror\tbinary_jpeg_renamed.txt is not a text file (it looks "
        "like JPEG image data): add the document itself, as PDF, DOCX, TXT or Markdown."
        "\tpages=-\tchars=0\tchunks=0\n")
    assert json.loads(again.stdout) == [{
        "name": "normal_pdflatex_4pages.pdf", "status": "ok",
        "message": "Already in the project (same content as “normal_pdflatex_4pages.pdf”).",
        "pages": 4, "chars": 14477, "chunks": 24, "file_id": 1, "duplicate": True,
        "needs_password": False, "path": str(pdf)}]
    assert ingest_jobs(context) == [JobStatus.SUCCEEDED] * 2


def test_a_kill_between_the_file_row_and_its_chunks_leaves_no_half_file(
        context: AppContext, home: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    project = project_with_model(context, tiny_model_dir)
    [book] = write_books(tmp_path / "books", 1, paragraphs=200)
    marker = home / "paused-at-after-file-row"
    child = subprocess.Popen(
        [sys.executable, "-m", "finetuneflow", "ingest", project, str(book)],
        env=cli_env(home, **{TEST_PAUSE_VARIABLE: "after-file-row"}), cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the ingest never reached the point between file and chunks"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    assert files_and_chunks(context, project) == []  # the file's row went with the transaction
    again = run_cli(home, "ingest", project, str(book))

    assert again.returncode == 0, again.stderr
    assert "Already in the project" not in again.stdout
    [(name, chunks)] = files_and_chunks(context, project)
    assert name == "book-0.txt" and chunks > 0 and f"chunks={chunks}" in again.stdout
    # The killed one's job was left running: the next start found its process gone.
    assert ingest_jobs(context) == [JobStatus.INTERRUPTED, JobStatus.SUCCEEDED]


def test_files_an_older_version_left_without_chunks_are_finished(
        context: AppContext, tiny_model_dir: Path, tmp_path: Path) -> None:
    """What a kill between the two commits of the old code left: the file `ok`, no chunks,
    with (A) or without (B) its extracted text. Adding A again reads it again; B is finished
    from the project's copy; C's copy is gone, so it asks to be added again."""
    project = project_with_model(context, tiny_model_dir)
    service = IngestService(context)
    paths = write_books(tmp_path / "books", 4, paragraphs=100)
    outcomes = service.ingest(project, paths)
    ids = [outcome.file_id for outcome in outcomes]
    with context.database.session() as session:
        session.execute(delete(Chunk).where(Chunk.file_id.in_(ids[:3])))
        stored = {row.id: row.stored_path for row in session.scalars(select(SourceFile))}
    for file_id in ids[1:3]:
        context.home.project_file(project, "chunks", f"{file_id}.json").unlink()
    (context.home.project_dir(project) / stored[ids[2]]).unlink()

    [again] = service.ingest_in_worker(project, paths[:1])

    assert again.status == "ok" and not again.duplicate and again.chunks > 0
    files = service.list_files(project)
    assert [f.id for f in files] == ids  # no duplicate rows: the same rows, finished
    assert [f.chunks > 0 for f in files] == [True, True, False, True]
    assert files[2].status == "error" and files[2].message == COPY_MISSING
    assert [f.chunks for f in files[:2]] == [o.chunks for o in outcomes[:2]]
    [retry] = service.ingest(project, paths[2:3])
    assert retry.file_id == ids[2] and retry.status == "ok" and retry.chunks > 0
    assert ingest_jobs(context) == [JobStatus.SUCCEEDED] * 3  # here, in the worker, here


def test_a_database_at_0001_with_rows_upgrades_and_takes_ingest_jobs(tmp_path: Path) -> None:
    db_path = tmp_path / "db.sqlite"
    engine = database_at(db_path, "0001")
    _seed_family(db_path, settings_bag=True)
    ingest_job = ("INSERT INTO jobs (project_id, kind, status, progress, message, params, result,"
                  " created_at, updated_at) VALUES ('p1', 'ingest', 'running', 0, '', '{}', '{}',"
                  " '2026-01-01', '2026-01-01')")
    with sqlite3.connect(db_path) as db, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute(ingest_job)

    upgrade_to_head(engine)

    assert [_count(db_path, t) for t in ("projects", "files", "chunks", "jobs")] == [1, 1, 1, 1]
    with sqlite3.connect(db_path) as db:
        db.execute(ingest_job)
    assert _count(db_path, "jobs") == 2
