"""Projects and their typed settings (base model, task, chunking, LLM, training, note).

Each settings section has its own column, so writing one never rewrites another (the GUI and a
worker process may each save a section at the same time). Values are checked on the way in;
on the way out, keys this version does not know (written by a newer one) are dropped, and a
section that no longer makes sense falls back to its default instead of blocking the project.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from sqlalchemy import ScalarSelect, Select, Table, event, func, insert, select

from finetuneflow.core.chunking import ChunkSettings
from finetuneflow.core.errors import NotFoundError, UserError
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.core.generation.tasks import TaskSettings
from finetuneflow.core.project_settings import (
    MODEL_SOURCES,
    ModelRef,
    ModelSource,
    ProjectSettings,
)
from finetuneflow.core.statuses import (
    ExampleSource,
    ExampleSplit,
    ExampleStatus,
    JobKind,
    JobStatus,
)
from finetuneflow.core.steps import STEP_KEYS, ProgressFacts, step_index
from finetuneflow.core.training.config import TrainingConfig
from finetuneflow.storage.home import Home
from finetuneflow.storage.machines import check_name
from finetuneflow.storage.tables import (
    Base,
    Chunk,
    DatasetExample,
    Job,
    Project,
    Run,
    SourceFile,
    new_uuid,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 200
MAX_MODEL_REF_LENGTH = 500
# A copy keeps the documents and the dataset, not the runs: it can go as far as Hardware.
LAST_STEP_OF_A_COPY = "hardware"
# What a copy does not take from its source: its identity, its dates and its place in the wizard.
NOT_COPIED = frozenset({"id", "name", "created_at", "updated_at", "current_step"})

# What a project's manifest (project.json, storage/home.py) records besides its id and name, so
# that its folder alone can bring the project back (services/restore.py).
MANIFEST_COLUMNS = ("current_step", "base_model", "base_model_source", "base_model_folder",
                    "task_config", "chunking", "llm", "training", "note", "is_sample",
                    "train_on")
_PENDING_MANIFESTS = "finetuneflow.manifests"  # session.info key: ids of projects changed

# The sections stored as JSON: each is checked by `_problems` below.
T = TypeVar("T", TaskSettings, ChunkSettings, LLMSettings, TrainingConfig)


@dataclass(frozen=True)
class _Section(Generic[T]):
    """How one settings dataclass is stored in its JSON column."""

    column: str
    decode: Callable[[dict[str, Any]], T]
    encode: Callable[[T], dict[str, Any]]


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {item.name for item in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


TASK = _Section("task_config", TaskSettings.from_dict, TaskSettings.to_dict)
CHUNKING = _Section("chunking", lambda data: ChunkSettings(**_known(ChunkSettings, data)), asdict)
LLM = _Section("llm", LLMSettings.from_dict, LLMSettings.to_dict)
TRAINING = _Section("training", lambda data: TrainingConfig.from_dict(_known(TrainingConfig, data)),
                    TrainingConfig.to_dict)


def _problems(settings: TaskSettings | ChunkSettings | LLMSettings | TrainingConfig) -> list[str]:
    """What is wrong with one section, in words for the person; empty when it can work."""
    if isinstance(settings, TaskSettings | LLMSettings):
        return settings.problems()
    try:
        settings.validate()
    except ValueError as error:
        return [str(error)]
    return []


def _clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise UserError("A project needs a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise UserError(f"A project name can have at most {MAX_NAME_LENGTH} characters.")
    return name


class ProjectRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # --- finding ------------------------------------------------------------------------------

    def resolve(self, ref: str) -> Project:
        """A project by id, unique id prefix (≥ 4 characters) or exact name."""
        ref = ref.strip()
        project = self._session.get(Project, ref)
        if project is not None:
            return project
        by_name = self._session.scalars(select(Project).where(Project.name == ref)).all()
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            raise UserError(f"Several projects are named {ref!r}: use the project id instead.")
        if len(ref) >= 4:
            by_prefix = self._session.scalars(
                select(Project).where(Project.id.startswith(ref, autoescape=True))).all()
            if len(by_prefix) == 1:
                return by_prefix[0]
            if len(by_prefix) > 1:
                raise UserError(f"{ref!r} matches several projects: give more of the id.")
        raise NotFoundError(f"No project {ref!r}. See `finetuneflow project list`.")

    def exists(self, project_id: str) -> bool:
        return self._session.get(Project, project_id) is not None

    def list_with_latest_job(self) -> list[tuple[Project, Job | None]]:
        """Every project with its most recent job (None when it has none), by name."""
        latest = (select(Job.project_id, func.max(Job.id).label("job_id"))
                  .group_by(Job.project_id).subquery())
        query = (select(Project, Job)
                 .outerjoin(latest, latest.c.project_id == Project.id)
                 .outerjoin(Job, Job.id == latest.c.job_id)
                 .order_by(Project.name))
        return [(project, job) for project, job in self._session.execute(query).all()]

    def find_sample(self) -> Project | None:
        """The first sample project made, if the person kept one."""
        return self._session.scalars(select(Project).where(Project.is_sample)
                                     .order_by(Project.created_at).limit(1)).first()

    # --- writing ------------------------------------------------------------------------------

    def create(self, name: str) -> Project:
        project = Project(name=_clean_name(name))
        self._session.add(project)
        self._session.flush()
        return project

    def rename(self, ref: str, name: str) -> Project:
        project = self._changing(ref)
        project.name = _clean_name(name)
        self._session.flush()
        return project

    def set_step(self, ref: str, step: str) -> None:
        step_index(step)  # validates
        project = self.resolve(ref)
        if project.current_step != step:
            self._remember(project)
            project.current_step = step

    def set_note(self, ref: str, note: str) -> None:
        self._changing(ref).note = note

    def mark_sample(self, ref: str) -> None:
        self._changing(ref).is_sample = True

    def restore(self, project_id: str, name: str, recorded: dict[str, Any]) -> Project:
        """A project again, with the id, name and settings its folder's manifest recorded;
        settings that cannot be used are left out (the defaults apply), listed in the log."""
        if self._session.get(Project, project_id) is not None:
            raise UserError(f"Project {project_id} is in the database already: there is "
                            "nothing to restore.")
        project = Project(id=project_id, name=_clean_name(name), **_restorable(recorded))
        self._session.add(project)
        self._session.flush()
        self._remember(project)
        return project

    def _changing(self, ref: str) -> Project:
        """The project, to be changed: its manifest is rewritten once the change commits."""
        project = self.resolve(ref)
        self._remember(project)
        return project

    def _remember(self, project: Project) -> None:
        record_in_manifest(self._session, project.id)

    def touch(self, ref: str) -> None:
        self.resolve(ref).updated_at = utcnow()

    def delete(self, ref: str) -> None:
        """Delete the project's row; the database cascades to every row that belongs to it."""
        self._session.delete(self.resolve(ref))
        self._session.flush()  # gone for the rest of the transaction (a restore writes it anew)

    def duplicate(self, ref: str, name: str | None = None) -> tuple[Project, dict[int, int]]:
        """A new project with this one's settings, documents (files and chunks) and dataset
        examples, but no jobs or runs; returns it with old file id → new file id."""
        source = self.resolve(ref)
        copy = Project(id=new_uuid(), name=_clean_name(name) if name else self._copy_name(source),
                       current_step=STEP_KEYS[min(step_index(source.current_step),
                                                  step_index(LAST_STEP_OF_A_COPY))],
                       **{column.key: getattr(source, column.key)
                          for column in Project.__table__.columns
                          if column.key not in NOT_COPIED})
        self._session.add(copy)
        self._session.flush()
        self._remember(copy)
        file_ids = self._copy_rows(SourceFile, source.id, copy.id)
        chunk_ids = self._copy_rows(Chunk, source.id, copy.id,
                                    lambda row: row.update(file_id=file_ids[row["file_id"]]))
        self._copy_rows(DatasetExample, source.id, copy.id,
                        lambda row: row.update(chunk_id=chunk_ids.get(row["chunk_id"])))
        return copy, file_ids

    def _copy_name(self, source: Project) -> str:
        """"X (copy)", or "X (copy 2)" and so on when that name is taken."""
        taken = set(self._session.scalars(select(Project.name)))
        for number in range(1, len(taken) + 2):
            suffix = " (copy)" if number == 1 else f" (copy {number})"
            candidate = source.name[:MAX_NAME_LENGTH - len(suffix)] + suffix
            if candidate not in taken:
                return candidate
        raise AssertionError("unreachable: some suffix is always free")

    def _copy_rows(self, model: type[Base], source_id: str, target_id: str,
                   remap: Callable[[dict[str, Any]], None] | None = None) -> dict[int, int]:
        """Insert copies of a project's rows of one table; return old id → new id."""
        table = model.__table__
        assert isinstance(table, Table)
        rows = [dict(row._mapping) for row in self._session.execute(
            select(table).where(table.c.project_id == source_id).order_by(table.c.id))]
        if not rows:
            return {}
        old_ids = [row.pop("id") for row in rows]
        for row in rows:
            row["project_id"] = target_id
            if remap is not None:
                remap(row)
        new_ids = self._session.scalars(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).all()
        return dict(zip(old_ids, new_ids, strict=True))

    # --- settings -----------------------------------------------------------------------------

    def settings(self, ref: str) -> ProjectSettings:
        project = self.resolve(ref)
        return ProjectSettings(
            model=_model_ref(project),
            task=_load(project, TASK) or TaskSettings(),
            chunking=_load(project, CHUNKING) or ChunkSettings(),
            llm=_load(project, LLM),
            training=_load(project, TRAINING),
            note=project.note,
            sample=project.is_sample,
            train_on=project.train_on,
        )

    def save_model(self, ref: str, model: ModelRef) -> bool:
        """Record the base model; True when it is another model than before."""
        if model.source not in MODEL_SOURCES:
            raise UserError(f"A base model comes from {' or '.join(MODEL_SOURCES)}, "
                            f"not {model.source!r}.")
        if not model.ref.strip() or len(model.ref) > MAX_MODEL_REF_LENGTH:
            raise UserError(f"A base model needs a name or folder of 1 to "
                            f"{MAX_MODEL_REF_LENGTH} characters.")
        project = self._changing(ref)
        changed = project.base_model != model.ref
        project.base_model = model.ref
        project.base_model_source = model.source
        project.base_model_folder = str(model.folder)
        return changed

    def save_task(self, ref: str, task: TaskSettings) -> None:
        self._save(ref, TASK, task)

    def save_chunking(self, ref: str, chunking: ChunkSettings) -> bool:
        """Store the chunk settings; True when they differ from before (the chunks are stale)."""
        project = self._changing(ref)
        changed = (_load(project, CHUNKING) or ChunkSettings()) != chunking
        _store(project, CHUNKING, chunking)
        return changed

    def save_llm(self, ref: str, llm: LLMSettings) -> None:
        self._save(ref, LLM, llm)

    def save_training(self, ref: str, training: TrainingConfig) -> None:
        self._save(ref, TRAINING, training)

    def _save(self, ref: str, section: _Section[T], value: T) -> None:
        """Store a section of settings; the same as stored writes nothing (a page's Next
        stores its settings each time a walk across the steps passes it)."""
        project = self.resolve(ref)
        if getattr(project, section.column) != section.encode(value):
            self._remember(project)
            _store(project, section, value)

    def save_train_on(self, ref: str, machine: str | None) -> None:
        """Where the Train step trains: a machine's name, or None for this computer. The name
        is checked as Settings → Machines checks it; whether that machine still exists is the
        caller's to say (machines.json may change after this is stored)."""
        self._changing(ref).train_on = None if machine is None else check_name(machine)

    # --- how far each project is (issue 14: the furthest completed step) ----------------------

    def progress_facts(self, project_id: str | None = None) -> dict[str, ProgressFacts]:
        """What each project (or the one given) has made, by project id. The dataset files
        are on disk, not here: `dataset_written` is left False for the caller to fill."""
        kept = (DatasetExample.status != ExampleStatus.REJECTED,
                DatasetExample.split != ExampleSplit.PREVIEW)
        examples = select(func.count()).where(DatasetExample.project_id == Project.id)
        # One statement, a counting subquery per fact: a page change reads this every time.
        query = select(
            Project.id, Project.base_model_folder, Project.task_config, Project.training,
            _count(select(func.count(func.distinct(Chunk.file_id)))
                   .where(Chunk.project_id == Project.id)).label("documents"),
            _count(examples.where(DatasetExample.split == ExampleSplit.PREVIEW)).label("previews"),
            _count(examples.where(*kept, DatasetExample.source == ExampleSource.IMPORTED)
                   ).label("imported"),
            _count(examples.where(*kept, DatasetExample.source != ExampleSource.IMPORTED)
                   ).label("generated"),
            _count(select(func.count()).where(Run.project_id == Project.id,
                                              Run.status == JobStatus.SUCCEEDED)).label("runs"),
            _count(select(func.count()).where(Job.project_id == Project.id,
                                              Job.kind == JobKind.EXPORT,
                                              Job.status == JobStatus.SUCCEEDED)).label("exports"))
        if project_id is not None:
            query = query.where(Project.id == project_id)
        return {row.id: ProgressFacts(
            model_chosen=row.base_model_folder is not None, task_chosen=bool(row.task_config),
            documents=row.documents, preview_examples=row.previews,
            generated_examples=row.generated, imported_examples=row.imported,
            training_set=row.training is not None, runs_succeeded=row.runs,
            exports=row.exports) for row in self._session.execute(query)}

    def sample_models(self) -> dict[str, str | None]:
        """The sample projects (copies of one included), each with its base model's name."""
        return {project_id: model for project_id, model in self._session.execute(
            select(Project.id, Project.base_model).where(Project.is_sample))}


def _count(query: Select[int]) -> ScalarSelect[int]:
    """A count of the rows that belong to the project of the enclosing query's row."""
    return query.correlate(Project).scalar_subquery()


def record_in_manifest(session: Session, project_id: str) -> None:
    """Rewrite the project's manifest (its settings and its documents' names) once this
    session's transaction commits."""
    pending: set[str] | None = session.info.get(_PENDING_MANIFESTS)
    if pending is None:
        pending = session.info[_PENDING_MANIFESTS] = set()
        event.listen(session, "before_commit", _note_manifests)
        event.listen(session, "after_commit", _write_manifests)
    pending.add(project_id)


def _note_manifests(session: Session) -> None:
    """Before the commit (the rows can still be read): what each changed project's manifest
    is to say. A project deleted meanwhile has none."""
    pending: set[str] = session.info[_PENDING_MANIFESTS]
    ready = []
    for project_id in sorted(pending):
        project = session.get(Project, project_id)
        if project is None:
            continue
        files = session.execute(select(SourceFile.stored_path, SourceFile.original_name)
                                .where(SourceFile.project_id == project_id)
                                .order_by(SourceFile.id))
        ready.append((project_id, project.name,
                      {key: getattr(project, key) for key in MANIFEST_COLUMNS},
                      {stored: original for stored, original in files}))
    session.info[_PENDING_MANIFESTS + ".ready"] = ready
    pending.clear()


def _write_manifests(session: Session) -> None:
    """After the commit: write the manifests. A failed write is logged, never undoes the
    commit (the manifest is a spare copy; the next change writes it again)."""
    ready = session.info.pop(_PENDING_MANIFESTS + ".ready", [])
    database = session.get_bind().engine.url.database
    if not ready or not database:
        return
    home = Home(Path(database).parent)  # the database lies in the home folder (storage/home.py)
    for project_id, name, settings, files in ready:
        try:
            home.write_manifest(project_id, name, settings=settings, files=files)
        except OSError as error:
            log.warning("could not record project %s in its folder: %s", project_id, error)


def _restorable(recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded settings that fit the projects table; the rest is logged and left out."""
    kept = {key: recorded[key] for key in MANIFEST_COLUMNS if key in recorded}
    problems = []
    model = [kept.pop(key, None) for key in ("base_model", "base_model_source",
                                             "base_model_folder")]
    if all(isinstance(value, str) for value in model) and model[1] in MODEL_SOURCES:
        kept.update(base_model=model[0], base_model_source=model[1], base_model_folder=model[2])
    elif any(value is not None for value in model):
        problems.append("base model")
    if kept.get("current_step") not in STEP_KEYS:
        kept.pop("current_step", None)
    for key, kind in (("task_config", dict), ("chunking", dict | None), ("llm", dict | None),
                      ("training", dict | None), ("note", str), ("is_sample", bool),
                      ("train_on", str | None)):
        if key in kept and not isinstance(kept[key], kind):
            problems.append(key)
            del kept[key]
    if problems:
        log.warning("restored project: recorded %s left out (not usable)", ", ".join(problems))
    return kept


def _model_ref(project: Project) -> ModelRef | None:
    if project.base_model is None or project.base_model_folder is None:
        return None  # no model, or one recorded before its folder was (it is chosen again)
    # The database admits only the known sources (a CHECK constraint).
    return ModelRef(project.base_model, cast(ModelSource, project.base_model_source),
                    Path(project.base_model_folder))


def _store(project: Project, section: _Section[T], value: T) -> None:
    if found := _problems(value):
        raise UserError(" ".join(found))
    setattr(project, section.column, section.encode(value))


def _load(project: Project, section: _Section[T]) -> T | None:
    """The stored section, or None when there is none or it cannot be used (logged)."""
    data = getattr(project, section.column)
    if data is None:
        return None
    try:
        if not isinstance(data, dict):
            raise TypeError(f"not an object: {data!r:.80}")
        value = section.decode(data)
        if found := _problems(value):
            raise ValueError(" ".join(found))
    except (TypeError, ValueError) as error:
        log.warning("project %s: its %s settings are ignored, the defaults apply (%s)",
                    project.id, section.column, error)
        return None
    return value
