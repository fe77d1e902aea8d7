"""How far each project is: the furthest completed step, from what the project has made
(its rows and its dataset files), for the projects list, the step list and the sample's note."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from finetuneflow.core.steps import ProgressFacts

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext


class ProgressService:
    def __init__(self, context: AppContext) -> None:
        self._context = context

    def all(self) -> dict[str, ProgressFacts]:
        """Every project's facts, by project id."""
        with self._context.transaction() as tx:
            found = tx.projects.progress_facts()
        return {project_id: self._with_files(project_id, facts)
                for project_id, facts in found.items()}

    def of(self, project_id: str) -> ProgressFacts:
        with self._context.transaction() as tx:
            found = tx.projects.progress_facts(project_id)
        return self._with_files(project_id, found.get(project_id, ProgressFacts()))

    def _with_files(self, project_id: str, facts: ProgressFacts) -> ProgressFacts:
        train = self._context.home.project_file(project_id, "datasets", "train.jsonl")
        return replace(facts, dataset_written=train.is_file())
