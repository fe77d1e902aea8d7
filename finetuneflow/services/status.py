"""Where a project stands: its model, documents, examples, runs and exports, and what comes next.

Every number is read from the database in one transaction, so what `project status` shows is
what the pages and the other commands count. The next step is a key (`NextStep`), worded by each
interface: the CLI names a command, the GUI a page.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from finetuneflow.services.datasets import reason_label
from finetuneflow.services.errors import NotFoundError
from finetuneflow.services.missing_step import MissingStepError, NextStep, missing_model
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import ExampleStatus, JobKind, JobStatus

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext


@dataclass(frozen=True)
class ProjectStatus:
    id: str
    name: str
    model: str | None
    files: list[tuple[str, str, int]]  # (name, status, chunks)
    chunks: int
    chunks_without_examples: int
    examples: dict[str, int]  # status -> count, the preview left out
    rejected_by_reason: dict[str, int]
    preview_examples: int
    runs: dict[str, int]  # status -> count
    latest_run: tuple[int, str] | None  # (id, status)
    exports: int
    latest_export: str | None  # the zip's path
    next_step: NextStep

    @property
    def kept(self) -> int:
        return self.examples.get("accepted", 0) + self.examples.get("edited", 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "model": self.model,
            "files": [{"name": name, "status": status, "chunks": chunks}
                      for name, status, chunks in self.files],
            "chunks": self.chunks, "chunks_without_examples": self.chunks_without_examples,
            "examples": {status.value: self.examples.get(status.value, 0)
                         for status in ExampleStatus},
            "rejected_by_reason": self.rejected_by_reason,
            "preview_examples": self.preview_examples,
            "runs": self.runs,
            "latest_run": ({"id": self.latest_run[0], "status": self.latest_run[1]}
                           if self.latest_run else None),
            "exports": self.exports, "latest_export": self.latest_export,
            "next_step": self.next_step.value,
        }


class StatusService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)

    def status(self, project_ref: str) -> ProjectStatus:
        project = self._projects.get(project_ref)
        with self._context.transaction() as tx:
            model = tx.projects.settings(project.id).model
            files = [(row.original_name, row.status.value, count)
                     for row, count in tx.documents.files_with_chunk_counts(project.id)]
            chunks = tx.documents.project_chunk_count(project.id)
            without = tx.examples.count_chunks_without_examples(project.id)
            examples = {status.value: count
                        for status, count in tx.examples.status_counts(project.id).items()}
            reasons = Counter[str]()
            for reason, count in tx.examples.reject_reasons(project.id):
                reasons[reason_label(reason)] += count
            preview = tx.examples.preview_count(project.id)
            runs = {status.value: count for status, count in tx.runs.status_counts(project.id)
                    .items()}
            latest = tx.runs.latest(project.id)
            exports = tx.jobs.results_of_succeeded(project.id, JobKind.EXPORT)
        status = ProjectStatus(
            id=project.id, name=project.name, model=model.ref if model else None,
            files=files, chunks=chunks, chunks_without_examples=without, examples=examples,
            rejected_by_reason=dict(reasons), preview_examples=preview, runs=runs,
            latest_run=(latest.id, latest.status.value) if latest else None,
            exports=len(exports), latest_export=exports[0].get("zip") if exports else None,
            next_step=NextStep.MODEL)
        return _with_next_step(status)


def check_can_train(context: AppContext, project_ref: str) -> None:
    """Model, then data: what a training needs first, before its settings are checked."""
    status = StatusService(context).status(project_ref)
    if status.model is None:
        raise missing_model(status.id)
    if status.kept == 0:
        step = NextStep.INGEST if status.chunks == 0 else (
            NextStep.GENERATE if status.preview_examples else NextStep.PREVIEW)
        raise MissingStepError(step, "The project has no examples to train on",
                               "There are no examples to train on: add documents and generate "
                               "examples first (the Data and Review steps).", status.id)


def _with_next_step(status: ProjectStatus) -> ProjectStatus:
    return replace(status, next_step=next_step(status))


def next_step(status: ProjectStatus) -> NextStep:
    """The first thing still missing, in the order the wizard walks."""
    if status.model is None:
        return NextStep.MODEL
    if status.kept == 0:
        if status.chunks == 0:
            return NextStep.INGEST
        return NextStep.GENERATE if status.preview_examples else NextStep.PREVIEW
    if not status.runs.get(JobStatus.SUCCEEDED.value):
        return NextStep.TRAIN
    return NextStep.CHAT if status.exports else NextStep.EXPORT


@dataclass(frozen=True)
class ExampleDetail:
    """One example in full, for `dataset show`."""

    id: int
    split: str
    status: str
    reject_reason: str | None
    tokens: int | None
    source: str
    messages: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def example_detail(context: AppContext, project_ref: str, example_id: int) -> ExampleDetail:
    """One example of this project (another project's id is not found: ids are global)."""
    project_id = ProjectService(context).get(project_ref).id
    with context.transaction() as tx:
        found = tx.examples.sourced([example_id])
        if not found or found[0].example.project_id != project_id:
            raise NotFoundError(f"The project has no example {example_id}.")
        example = found[0].example
        source = ("imported" if found[0].file_name is None
                  else f"{found[0].file_name} · chunk {(found[0].ordinal or 0) + 1}")
        return ExampleDetail(example.id, example.split.value, example.status.value,
                             example.reject_reason, example.token_count, source,
                             [dict(m) for m in example.messages])


def has_own_llm(context: AppContext, project_ref: str) -> bool:
    """Whether the project saved LLM settings (an earlier run), not the app's defaults."""
    with context.transaction() as tx:
        return tx.projects.settings(project_ref).llm is not None
