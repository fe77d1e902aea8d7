"""SQLAlchemy 2 models of the tables. Alembic (migrations/) owns the schema built from them."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from finetuneflow.core import statuses
from finetuneflow.core.dataset.keys import hash_key

# The states live in core (the window shows them before this module loads); named here too.
FileStatus = statuses.FileStatus
JobKind = statuses.JobKind
JobStatus = statuses.JobStatus
ExampleSplit = statuses.ExampleSplit
ExampleStatus = statuses.ExampleStatus
ExampleSource = statuses.ExampleSource

# Named constraints: batch migrations (SQLite table rebuilds) need names to find them again.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Naive UTC: SQLite stores no time zone, so every timestamp is UTC by convention."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_uuid() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # Stored as the lowercase value in a VARCHAR with a CHECK: readable in any SQLite browser.
    return Enum(cls, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda members: [m.value for m in members])


# The examples that go into training (see storage/examples.py), as SQL for the unique index.
KEPT_EXAMPLE = "status != 'rejected' AND split != 'preview'"
# The unique index's third part: 0 for a kept example, so a second kept copy in the project
# collides; NULL for any other row, and NULLs never collide, so rejected and preview rows may
# repeat. One index thus keeps kept examples unique and finds every row of a project by hash
# key: an import writes one random-keyed index, not two.
KEPT_MARK = f"(CASE WHEN {KEPT_EXAMPLE} THEN 0 END)"
EXAMPLE_KEY_INDEX = "uq_dataset_examples_hash_key_project"


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    current_step: Mapped[str] = mapped_column(String(20), default="model")
    # The settings, one typed section per column (see storage/projects.py). The base model is
    # its reference (shown in lists) with where it came from and the folder holding its files.
    base_model: Mapped[str | None] = mapped_column(String(500))
    base_model_source: Mapped[str | None] = mapped_column(String(8))
    base_model_folder: Mapped[str | None] = mapped_column(String(1000))
    task_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    chunking: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None: the defaults
    llm: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None: the app's default LLM
    training: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None: the default preset
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    is_sample: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Where the Train step trains: a machine's name (Settings → Machines); None: this computer.
    train_on: Mapped[str | None] = mapped_column(String(64))

    files: Mapped[list[SourceFile]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True)
    jobs: Mapped[list[Job]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True)

    __table_args__ = (
        CheckConstraint("base_model_source IN ('hub', 'local')", name="base_model_source"),
        # Where the model lies is known only with the model, and source and folder go together.
        CheckConstraint("(base_model_source IS NULL) = (base_model_folder IS NULL) AND "
                        "(base_model IS NOT NULL OR base_model_source IS NULL)",
                        name="base_model_complete"),
    )


class SourceFile(Base):
    __tablename__ = "files"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            index=True)
    original_name: Mapped[str] = mapped_column(String(500))
    stored_path: Mapped[str] = mapped_column(String(500))  # relative to the project folder
    sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[FileStatus] = mapped_column(_enum(FileStatus, "file_status"))
    message: Mapped[str] = mapped_column(Text, default="")
    pages: Mapped[int | None] = mapped_column(Integer)
    chars: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="files")
    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="file", cascade="all, delete-orphan", passive_deletes=True)

    __table_args__ = (Index("uq_files_project_sha256", "project_id", "sha256", unique=True),)


class Chunk(Base):
    __tablename__ = "chunks"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    page_start: Mapped[int | None] = mapped_column(Integer)
    page_end: Mapped[int | None] = mapped_column(Integer)
    section: Mapped[str | None] = mapped_column(String(500))

    file: Mapped[SourceFile] = relationship(back_populates="chunks")


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            index=True)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"),
                                              default=JobStatus.QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The process running the job: at start-up only jobs whose process is gone are interrupted,
    # so opening the GUI while a CLI job runs does not mark that job dead.
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    project: Mapped[Project] = relationship(back_populates="jobs")

    # One running job per project and kind: two generations of one project would write the
    # same examples twice. A queued job (created, never started) blocks nothing.
    __table_args__ = (Index("uq_jobs_one_running", "project_id", "kind", unique=True,
                            sqlite_where=text("status = 'running'")),)


class DatasetExample(Base):
    __tablename__ = "dataset_examples"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Indexed alone (and second in EXAMPLE_KEY_INDEX, below): the review table pages through
    # a project's examples in id order, which only an index of its own gives.
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            index=True)
    # Removing a document keeps the examples it produced: the person reviewed them.
    chunk_id: Mapped[int | None] = mapped_column(ForeignKey("chunks.id", ondelete="SET NULL"),
                                                 index=True)
    split: Mapped[ExampleSplit] = mapped_column(_enum(ExampleSplit, "example_split"))
    messages: Mapped[list[Any]] = mapped_column()
    status: Mapped[ExampleStatus] = mapped_column(_enum(ExampleStatus, "example_status"),
                                                  default=ExampleStatus.ACCEPTED)
    reject_reason: Mapped[str | None] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    # hash_key(content_hash), set with it (below): the index holds this 8-byte key.
    hash_key: Mapped[int] = mapped_column(BigInteger)
    token_count: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[ExampleSource] = mapped_column(_enum(ExampleSource, "example_source"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    # A kept example exists once per project; rejected and preview rows may repeat it.
    # The hash key first: by project, SQLite would read a project's rows through this index
    # in hash order, not through the project's own index in id order (a review page 10x slower).
    __table_args__ = (Index(EXAMPLE_KEY_INDEX, "hash_key", "project_id", text(KEPT_MARK),
                            unique=True),)

    @validates("content_hash")
    def _set_key(self, _name: str, digest: str) -> str:
        self.hash_key = hash_key(digest)
        return digest


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"),
                                               index=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "run_status"),
                                              default=JobStatus.QUEUED)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifacts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # name -> relative path
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


# An evaluation's states (core/evaluation/results.EVALUATION_STATUSES), as SQL for the CHECK.
EVALUATION_STATUS_CHECK = "status IN ('running', 'stopped', 'succeeded', 'failed')"
VERDICT_CHECK = "{0} IS NULL OR {0} IN ('A', 'B', 'tie')"
OUTCOME_CHECK = "outcome IS NULL OR outcome IN ('win', 'tie', 'loss')"


class EvaluationRecord(Base):
    """One evaluation of a finished run: its settings, its losses and what the judge cost."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"),
                                               index=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    judge: Mapped[bool] = mapped_column(Boolean, default=False)
    max_questions: Mapped[int | None] = mapped_column(Integer)
    max_new_tokens: Mapped[int] = mapped_column(Integer)
    base_eval_loss: Mapped[float | None] = mapped_column(Float)
    tuned_eval_loss: Mapped[float | None] = mapped_column(Float)
    base_perplexity: Mapped[float | None] = mapped_column(Float)
    tuned_perplexity: Mapped[float | None] = mapped_column(Float)
    judge_requests: Mapped[int] = mapped_column(Integer, default=0)
    judge_tokens: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (CheckConstraint(EVALUATION_STATUS_CHECK, name="status"),)


class EvaluationQuestion(Base):
    """One question of an evaluation: both answers, their scores and the judge's verdicts.

    `key` names the question within its evaluation ("example:ID", or "typed:HASH" for one the
    person typed): unique, so a resumed evaluation can never hold a question twice. A verdict's
    winner is NULL until it is read; its reason then says why it could not be (asked again on
    resume)."""

    __tablename__ = "evaluation_questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(80))
    ordinal: Mapped[int] = mapped_column(Integer)
    example_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_examples.id", ondelete="SET NULL"), index=True)
    prompt: Mapped[list[Any]] = mapped_column()  # the chat up to the answer
    question: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    passage: Mapped[str | None] = mapped_column(Text)
    base_answer: Mapped[str | None] = mapped_column(Text)
    tuned_answer: Mapped[str | None] = mapped_column(Text)
    base_f1: Mapped[float | None] = mapped_column(Float)
    tuned_f1: Mapped[float | None] = mapped_column(Float)
    base_rouge_l: Mapped[float | None] = mapped_column(Float)
    tuned_rouge_l: Mapped[float | None] = mapped_column(Float)
    base_grounded: Mapped[bool | None] = mapped_column(Boolean)
    tuned_grounded: Mapped[bool | None] = mapped_column(Boolean)
    base_first_winner: Mapped[str | None] = mapped_column(String(8))
    base_first_reason: Mapped[str | None] = mapped_column(Text)
    tuned_first_winner: Mapped[str | None] = mapped_column(String(8))
    tuned_first_reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("uq_evaluation_questions_key", "evaluation_id", "key", unique=True),
        CheckConstraint(VERDICT_CHECK.format("base_first_winner"), name="base_first_winner"),
        CheckConstraint(VERDICT_CHECK.format("tuned_first_winner"), name="tuned_first_winner"),
        CheckConstraint(OUTCOME_CHECK, name="outcome"),
    )
