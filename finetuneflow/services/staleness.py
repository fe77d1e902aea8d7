"""Results made before their inputs changed: shown on the step that can redo them.

Worked out from what is stored (chunks without examples, the model folder a run trained
from, when examples changed), so it holds after a restart and for work done from the CLI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from finetuneflow.services.base_model import ModelService
from finetuneflow.services.errors import UserError
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.tables import Run

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext


@dataclass(frozen=True)
class StaleNote:
    step: str  # the step whose results are out of date
    message: str
    action: str | None = None  # the label of the button that redoes the work
    method: str | None = None  # the page method the button calls


class StalenessService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)

    def notes(self, project_ref: str) -> list[StaleNote]:
        project_id = self._projects.get(project_ref).id
        notes = [note for note in (self._new_chunks(project_id),) if note]
        run = self._latest_finished_run(project_id)
        if run is not None:
            notes += [note for note in (self._new_model(project_id, run),
                                        self._new_examples(project_id, run)) if note]
        return notes

    def _new_chunks(self, project_id: str) -> StaleNote | None:
        """Documents added after a generation: their chunks have no examples yet."""
        if not self._has_generated(project_id):
            return None
        try:
            remaining = GenerationService(self._context).remaining_chunks(project_id)
        except UserError:  # no chunks at all: nothing is stale
            return None
        if not remaining:
            return None
        return StaleNote("review", f"{remaining} chunks have no examples yet (documents added "
                         "after the last generation).", "Generate them", "start_generation")

    def _new_model(self, project_id: str, run: Run) -> StaleNote | None:
        trained_from = _run_model_folder(self._context, project_id, run.id)
        choice = ModelService(self._context).current(project_id)
        if choice is None or trained_from is None or Path(trained_from) == choice.folder:
            return None
        return StaleNote("train", f"The base model changed after the last training (run "
                         f"{run.id}); its adapter belongs to the old model. Train again to "
                         f"fine-tune {choice.ref}.", "Train again", "start")

    def _new_examples(self, project_id: str, run: Run) -> StaleNote | None:
        with self._context.transaction() as tx:
            changed = tx.examples.last_change(project_id)
        if changed is None or run.started_at is None or changed <= run.started_at:
            return None
        return StaleNote("train", f"The dataset changed after the last training (run {run.id})."
                         " Train again to learn from the new examples.", "Train again", "start")

    def _has_generated(self, project_id: str) -> bool:
        with self._context.transaction() as tx:
            return tx.examples.has_generated(project_id)

    def _latest_finished_run(self, project_id: str) -> Run | None:
        with self._context.transaction() as tx:
            return tx.runs.latest_succeeded(project_id)


def _run_model_folder(context: AppContext, project_id: str, run_id: int) -> str | None:
    job_file = context.home.project_file(project_id, "artifacts", f"run-{run_id}", "job.json")
    if not job_file.is_file():
        return None
    return json.loads(job_file.read_text(encoding="utf-8")).get("model_path")
