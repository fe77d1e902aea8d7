"""The sample project: three short documents of our own, set up for questions and answers.

It shows the whole path with nothing to prepare: the documents are in `resources/samples/`, the
task is Q&A, and a small curated model is chosen when the Hugging Face cache already has it.
Everything up to writing the examples works offline and without an account; the project's note
says what the next steps need (a model download, an LLM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetuneflow.core.model_catalogue import curated_models
from finetuneflow.core.progress import ProgressSink, ignore_progress
from finetuneflow.core.resources import resource_path
from finetuneflow.services.base_model import ModelChoice, ModelService
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.ingest import IngestService
from finetuneflow.services.projects import ProjectService, ProjectSummary

if TYPE_CHECKING:
    from pathlib import Path

    from finetuneflow.services.context import AppContext

SAMPLE_NAME = "Sample: Willow Lane Community Garden"
SAMPLE_FILES = ("willow-lane-growing-guide.pdf", "willow-lane-members-handbook.docx",
                "willow-lane-faq.txt")
SMALL_MODEL_PARAMS = 1_000_000_000  # curated models up to this size may be pre-selected

ABOUT = ("Sample project: a community garden's growing guide (PDF), members' handbook (Word) "
         "and questions and answers (text), set up to teach a model to answer questions "
         "about them.")
CHOOSE_MODEL = ("Next: choose a base model (step 1). That downloads its tokenizer from "
                "Hugging Face (a few MB, no account needed); SmolLM2-135M-Instruct is a good "
                "first pick.")
MODEL_READY = "The base model {model} was already on this computer, so it is chosen."
NEEDS_LLM = ("Writing the examples (step 4, Preview) needs an LLM: an Ollama Cloud API key, or "
             "Ollama running on this computer. Training downloads the model's weights.")


def sample_documents() -> list[Path]:
    return [resource_path("samples", name) for name in SAMPLE_FILES]


class SampleService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._projects = ProjectService(context)

    def existing(self) -> ProjectSummary | None:
        """The sample project made earlier, if the person kept it."""
        with self._context.transaction() as tx:
            found = tx.projects.find_sample()
        return None if found is None else self._projects.get(found.id)

    def create(self, model: str | None = None, *, hf_cache: Path | None = None,
               progress: ProgressSink = ignore_progress) -> ProjectSummary:
        """A new sample project: the Q&A task, the three documents, and the base model given
        (a folder or Hub id) or else a small curated one already in the Hugging Face cache."""
        project = self._projects.create(SAMPLE_NAME)
        GenerationService(self._context).set_task(project.id, "qa")
        models = ModelService(self._context)
        if model:
            choice: ModelChoice | None = models.choose(project.id, model)
        elif choice := self._cached_small_model(models, hf_cache):
            models.use(project.id, choice)
        IngestService(self._context).ingest(project.id, sample_documents(), progress=progress)
        self._mark(project.id, choice)
        return self._projects.get(project.id)

    @staticmethod
    def _cached_small_model(models: ModelService, hf_cache: Path | None) -> ModelChoice | None:
        for curated in curated_models():
            if curated.params <= SMALL_MODEL_PARAMS and not curated.gated:
                choice = models.cached(curated.id, hf_cache)
                if choice is not None:
                    return choice
        return None

    def _mark(self, project_id: str, choice: ModelChoice | None) -> None:
        middle = MODEL_READY.format(model=choice.ref) if choice else CHOOSE_MODEL
        with self._context.transaction() as tx:
            tx.projects.set_note(project_id, "\n".join((ABOUT, middle, NEEDS_LLM)))
            tx.projects.mark_sample(project_id)  # the sample button reopens it
            tx.projects.set_step(project_id, "data" if choice else "model")
