from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from finetuneflow.core.chunking import ChunkSettings
from finetuneflow.core.ingest import IngestLimits
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import NotFoundError
from finetuneflow.services.ingest import IngestService, sha256_of
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import (
    Chunk,
    DatasetExample,
    ExampleSource,
    ExampleSplit,
    SourceFile,
)

NORMAL_PDF = "pdf/normal_pdflatex_4pages.pdf"
LOCKED_PDF = "pdf/encrypted_userpw_rc4-128_libreoffice.pdf"
DOCX = "docx/google-docs-export.docx"
TEXT = "txt/utf8_hebrew_rtl.txt"


@pytest.fixture
def project_id(context: AppContext, tiny_model_dir: Path) -> str:
    project = ProjectService(context).create("Docs")
    ModelService(context).choose(project.id, str(tiny_model_dir))
    return project.id


@pytest.fixture
def ingest(context: AppContext) -> IngestService:
    return IngestService(context)


def test_documents_become_files_and_chunks(ingest: IngestService, context: AppContext,
                                           project_id: str, corpus_dir: Path) -> None:
    sources = [corpus_dir / NORMAL_PDF, corpus_dir / DOCX, corpus_dir / TEXT]
    before = [sha256_of(path) for path in sources]
    outcomes = ingest.ingest(project_id, sources)
    assert [o.status for o in outcomes] == ["ok", "ok", "ok"], outcomes
    assert outcomes[0].pages == 4 and all(o.chunks > 0 and o.chars > 0 for o in outcomes)
    assert [sha256_of(path) for path in sources] == before  # originals untouched

    raw = sorted(p.name for p in context.home.project_subdir(project_id, "raw").iterdir())
    assert len(raw) == 3 and all(name[12] == "-" for name in raw)
    with context.database.session() as session:
        chunks = session.scalars(select(Chunk).where(Chunk.project_id == project_id)
                                 .order_by(Chunk.file_id, Chunk.ordinal)).all()
        assert len(chunks) == sum(o.chunks for o in outcomes)
        pdf_chunks = [c for c in chunks if c.file_id == outcomes[0].file_id]
        assert pdf_chunks[0].page_start == 1 and pdf_chunks[-1].page_end == 4
        assert all(0 < c.token_count <= 512 for c in chunks)
        assert all(c.char_start < c.char_end for c in chunks)


def test_same_file_twice_is_stored_once(ingest: IngestService, project_id: str,
                                        corpus_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "renamed copy.pdf"
    shutil.copy(corpus_dir / NORMAL_PDF, copy)
    first, second = ingest.ingest(project_id, [corpus_dir / NORMAL_PDF, copy])
    assert not first.duplicate and second.duplicate
    assert "Already in the project" in second.message and second.file_id == first.file_id
    again = ingest.ingest(project_id, [corpus_dir / NORMAL_PDF])[0]
    assert again.duplicate and again.chunks == first.chunks
    assert len(ingest.list_files(project_id)) == 1


def test_encrypted_pdf_asks_for_its_password(ingest: IngestService, project_id: str,
                                             corpus_dir: Path) -> None:
    locked = ingest.ingest(project_id, [corpus_dir / LOCKED_PDF])[0]
    assert locked.status == "error" and locked.needs_password and locked.chunks == 0
    wrong = ingest.ingest(project_id, [corpus_dir / LOCKED_PDF], password="nope")[0]
    assert wrong.status == "error" and "wrong" in wrong.message.lower()
    opened = ingest.ingest(project_id, [corpus_dir / LOCKED_PDF], password="openpassword")[0]
    assert opened.status == "ok" and opened.chunks > 0
    assert opened.file_id == locked.file_id  # the error row was replaced, not duplicated
    assert len(ingest.list_files(project_id)) == 1


def test_bad_files_are_results_not_exceptions(ingest: IngestService, project_id: str,
                                              corpus_dir: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog")
    outcomes = ingest.ingest(project_id, [
        corpus_dir / "txt/binary_jpeg_renamed.txt", truncated,
        corpus_dir / "docx/not-a-zip_word97-binary.docx", tmp_path / "missing.pdf"])
    assert [o.status for o in outcomes] == ["error"] * 4
    assert all(o.message for o in outcomes)
    assert "does not exist" in outcomes[3].message


def test_size_limit(context: AppContext, project_id: str, corpus_dir: Path) -> None:
    small = IngestService(context, IngestLimits(max_bytes=10_000))
    outcome = small.ingest(project_id, [corpus_dir / NORMAL_PDF])[0]
    assert outcome.status == "error" and "limit" in outcome.message
    assert not any(context.home.project_subdir(project_id, "raw").iterdir())


def test_folders_are_searched_recursively(ingest: IngestService, project_id: str,
                                          tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.txt").write_text("First document. " * 40, encoding="utf-8")
    (tmp_path / "a" / "b" / "two.md").write_text("# Title\n\nSecond. " * 40, encoding="utf-8")
    (tmp_path / "a" / "b" / "skip.exe").write_bytes(b"MZ\x00\x00")
    (tmp_path / "a" / ".hidden.txt").write_text("hidden", encoding="utf-8")
    outcomes = ingest.ingest(project_id, [tmp_path / "a"])
    assert sorted(o.name for o in outcomes) == ["one.txt", "two.md"]


def test_hostile_file_names_stay_inside_raw(ingest: IngestService, context: AppContext,
                                            project_id: str, tmp_path: Path) -> None:
    evil = tmp_path / "..\\..\\evil name;rm -rf.txt"
    evil.write_text("A harmless text about storage. " * 10, encoding="utf-8")
    outcome = ingest.ingest(project_id, [evil])[0]
    assert outcome.status == "ok" and outcome.name == evil.name
    raw = context.home.project_subdir(project_id, "raw")
    stored = list(raw.iterdir())
    assert len(stored) == 1 and stored[0].parent == raw
    assert "\\" not in stored[0].name and ".." not in stored[0].name


def test_remove_file_keeps_examples_and_counts_them(ingest: IngestService, context: AppContext,
                                                    project_id: str, corpus_dir: Path) -> None:
    outcome = ingest.ingest(project_id, [corpus_dir / NORMAL_PDF])[0]
    with context.database.session() as session:
        chunk_id = session.scalars(select(Chunk.id).where(Chunk.file_id == outcome.file_id)
                                   ).first()
        session.add(DatasetExample(project_id=project_id, chunk_id=chunk_id,
                                   split=ExampleSplit.TRAIN, content_hash="h",
                                   messages=[{"role": "user", "content": "q"}],
                                   source=ExampleSource.GENERATED))
    removed = ingest.remove_file(project_id, outcome.file_id)
    assert (removed.chunks, removed.examples) == (outcome.chunks, 1)
    assert ingest.list_files(project_id) == [] and ingest.count_chunks(project_id) == 0
    with context.database.session() as session:
        example = session.scalars(select(DatasetExample)).one()
        assert example.chunk_id is None
        assert session.scalars(select(SourceFile)).all() == []
    assert not any(context.home.project_subdir(project_id, "raw").iterdir())
    with pytest.raises(NotFoundError):
        ingest.remove_file(project_id, outcome.file_id)


def test_chunk_settings_and_model_changes_recut(ingest: IngestService, context: AppContext,
                                                project_id: str, corpus_dir: Path,
                                                tmp_path: Path) -> None:
    before = ingest.ingest(project_id, [corpus_dir / NORMAL_PDF])[0].chunks
    after = ingest.set_chunk_settings(project_id, ChunkSettings(max_tokens=128,
                                                                overlap_tokens=16))
    assert after > before and ingest.count_chunks(project_id) == after
    assert ingest.chunk_settings(project_id) == ChunkSettings(128, 16)


def test_without_a_model_documents_wait_for_chunking(ingest: IngestService,
                                                     context: AppContext, corpus_dir: Path,
                                                     tiny_model_dir: Path) -> None:
    project_id = ProjectService(context).create("No model yet").id
    outcome = ingest.ingest(project_id, [corpus_dir / DOCX])[0]
    assert outcome.status == "ok" and outcome.chunks == 0 and "base model" in outcome.message
    assert not ingest.has_training_material(project_id)
    ModelService(context).choose(project_id, str(tiny_model_dir))
    assert ingest.count_chunks(project_id) > 0
    assert ingest.has_training_material(project_id)
