"""The sample project: three short documents of our own, set up for questions and answers.

It shows the whole path with nothing to prepare: the documents are in `resources/samples/`, the
task is Q&A, a reviewed dataset written by hand for them comes along (so it trains without an
LLM), and a small curated model is chosen when the Hugging Face cache already has it. The
project's note says which steps are ready and which need a download or a key; it is worked out
again from the project's state whenever it is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from finetuneflow.core.model_catalogue import curated_models
from finetuneflow.core.progress import ProgressSink, ignore_progress
from finetuneflow.core.resources import resource_path
from finetuneflow.core.steps import ProgressFacts
from finetuneflow.services.progress import ProgressService
from finetuneflow.services.projects import ProjectService, ProjectSummary

# Light at import: the projects list and the Model page read the note; making the sample
# (ingestion, the LLM client, the Hub) imports the rest when it runs.
if TYPE_CHECKING:
    from finetuneflow.services.base_model import ModelChoice, ModelService
    from finetuneflow.services.context import AppContext

SAMPLE_NAME = "Sample: Willow Lane Community Garden"
SAMPLE_FILES = ("willow-lane-growing-guide.pdf", "willow-lane-members-handbook.docx",
                "willow-lane-faq.txt")
SAMPLE_DATASET = "willow-lane-dataset.jsonl"  # questions and answers written for the three
SMALL_MODEL_PARAMS = 1_000_000_000  # curated models up to this size may be pre-selected

ABOUT = ("Sample project: a community garden's growing guide (PDF), members' handbook (Word) "
         "and questions and answers (text), set up to teach a model to answer questions "
         "about them.")
READY = ("Ready: the documents (step 3) and {examples} reviewed questions and answers "
         "written for them (step 5, Review), so it trains without an LLM.")
CHOOSE_MODEL = ("Next: choose a base model (step 1). That downloads its tokenizer from "
                "Hugging Face (a few MB, no account needed); SmolLM2-135M-Instruct is a good "
                "first pick. Training (step 7) then downloads its weights.")
MODEL_READY = ("Next: the base model {model} is chosen, so go on to Hardware (step 6) and "
               "Train (step 7).")
TRAINED = ("Trained. Next: export the model and try it side by side with the base (step 8, "
           "Export).")
EXPORTED = ("Trained and exported: the zip is ready (step 8, Export). Try the model there, or "
            "write more examples and train again.")
NEEDS_LLM = ("Only writing more examples (step 4, Preview) needs an LLM: an Ollama Cloud API "
             "key, or Ollama running on this computer.")


def sample_note(facts: ProgressFacts, model: str | None) -> str:
    """What the sample project's note says now: what is ready and the next step, from the
    same facts as the projects list's Step column (so it never points to a step done)."""
    lines = [ABOUT]
    if facts.examples:
        lines.append(READY.format(examples=facts.examples))
    if not facts.model_chosen:
        lines.append(CHOOSE_MODEL)
    elif not facts.runs_succeeded:
        lines.append(MODEL_READY.format(model=model or "chosen"))
    else:
        lines.append(EXPORTED if facts.exports else TRAINED)
    if not facts.exports:
        lines.append(NEEDS_LLM)
    return "\n".join(lines)


def sample_documents() -> list[Path]:
    return [resource_path("samples", name) for name in SAMPLE_FILES]


def sample_dataset() -> Path:
    return resource_path("samples", SAMPLE_DATASET)


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
        from finetuneflow.services.base_model import ModelService
        from finetuneflow.services.datasets import DatasetService
        from finetuneflow.services.generation import GenerationService
        from finetuneflow.services.ingest import IngestService

        project = self._projects.create(SAMPLE_NAME)
        GenerationService(self._context).set_task(project.id, "qa")
        models = ModelService(self._context)
        if model:
            choice: ModelChoice | None = models.choose(project.id, model)
        elif choice := self._cached_small_model(models, hf_cache):
            models.use(project.id, choice)
        IngestService(self._context).ingest(project.id, sample_documents(), progress=progress)
        DatasetService(self._context).import_file(project.id, sample_dataset())
        self._mark(project.id, choice)
        return self._projects.get(project.id)

    def notes(self, progress: dict[str, ProgressFacts] | None = None) -> dict[str, str]:
        """The sample projects' notes as they stand now, by project id (other projects keep
        the note they were given). `progress`: the facts, when the caller has read them."""
        with self._context.transaction() as tx:
            samples = tx.projects.sample_models()
        if not samples:
            return {}
        progress = progress if progress is not None else ProgressService(self._context).all()
        return {project_id: sample_note(progress.get(project_id, ProgressFacts()), model)
                for project_id, model in samples.items()}

    def note(self, project_id: str) -> str | None:
        """This project's sample note now; None when it is not a sample project."""
        return self.notes().get(project_id)

    @staticmethod
    def _cached_small_model(models: ModelService, hf_cache: Path | None) -> ModelChoice | None:
        for curated in curated_models():
            if curated.params <= SMALL_MODEL_PARAMS and not curated.gated:
                choice = models.cached(curated.id, hf_cache)
                if choice is not None:
                    return choice
        return None

    def _mark(self, project_id: str, choice: ModelChoice | None) -> None:
        # Stored too, for what reads the note without these facts (the list at start-up).
        note = sample_note(ProgressService(self._context).of(project_id),
                           choice.ref if choice else None)
        with self._context.transaction() as tx:
            tx.projects.set_note(project_id, note)
            tx.projects.mark_sample(project_id)  # the sample button reopens it
            tx.projects.set_step(project_id, "review" if choice else "model")
