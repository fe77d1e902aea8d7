"""A project's finished training runs, as the export, the chat and Ollama read them: the run's
record, its job file (base model, datasets, adapter) and the system prompt it learnt with."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuneflow.core.child_protocol import ProtocolError, TrainJob
from finetuneflow.core.export import bundle
from finetuneflow.core.generation.tasks import Task
from finetuneflow.services.errors import UserError
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.missing_step import missing_finished_run
from finetuneflow.services.projects import ProjectService

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

Chat = list[dict[str, str]]


@dataclass
class FinishedRun:
    """A succeeded run with an adapter."""

    id: int
    project_id: str
    project_name: str
    config: dict[str, Any]
    record_metrics: dict[str, Any]  # the Run row's (the finished event's fields)
    job: TrainJob  # paths: base model, datasets, adapter
    folder: Path  # artifacts/run-N

    @property
    def model_dir(self) -> Path:
        return Path(self.job.model_path)

    @property
    def adapter_dir(self) -> Path:
        return Path(self.job.adapter_dir)

    @cached_property
    def train_chats(self) -> list[Chat]:
        return _read_chats(self.job.train_path)

    @cached_property
    def eval_chats(self) -> list[Chat]:
        return _read_chats(self.job.eval_path)

    @property
    def sample_pairs(self) -> list[tuple[Chat, str]]:
        """(chat, reference answer) to draw the sample prompts from: the held-out chats, else
        the training ones."""
        return [pair for chat in (self.eval_chats or self.train_chats)
                if (pair := bundle.prompt_and_reference(chat)) is not None]


class FinishedRuns:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)

    def ids(self, project_ref: str) -> list[int]:
        """The project's finished runs (with an adapter), newest first."""
        project_id = self._projects.get(project_ref).id
        with self._context.transaction() as tx:
            return [run.id for run in tx.runs.exportable(project_id)]

    def get(self, project_ref: str, run_id: int | None = None) -> FinishedRun:
        """The given finished run, or the latest; a UserError that says which exist."""
        project = self._projects.get(project_ref)
        with self._context.transaction() as tx:
            rows = {run.id: (dict(run.config), dict(run.metrics))
                    for run in tx.runs.exportable(project.id)}
        if not rows:
            raise missing_finished_run(project.id)
        if run_id is not None and run_id not in rows:
            raise UserError(f"Run {run_id} is not a finished run of this project; finished "
                            f"runs: {', '.join(map(str, rows))}.")
        chosen = run_id if run_id is not None else next(iter(rows))
        folder = self._context.home.project_file(project.id, "artifacts", f"run-{chosen}")
        try:
            job = TrainJob.read(folder / "job.json")
        except ProtocolError as error:
            raise UserError(f"Run {chosen}'s job file cannot be read ({error}).") from None
        return FinishedRun(chosen, project.id, project.name, *rows[chosen], job, folder)

    def trained_system_prompt(self, run: FinishedRun) -> str:
        """The system prompt the model learnt with: the training chats' most common one (the
        task's, for generated examples), else the task's."""
        prompts = Counter(chat[0]["content"] for chat in run.train_chats
                          if chat and chat[0]["role"] == "system")
        if prompts:
            return prompts.most_common(1)[0][0]
        return Task(GenerationService(self._context).task_settings(run.project_id)).system_prompt


def last_user_text(chat: Chat) -> str:
    return next((m["content"] for m in reversed(chat) if m["role"] == "user"), "")


def _read_chats(path: str | None) -> list[Chat]:
    """The chats of a dataset file the trainer read (it checked every line)."""
    if not path or not Path(path).is_file():
        return []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["messages"] for line in lines if line.strip()]
