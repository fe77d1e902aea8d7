"""Choosing the base model: a local folder or a Hub id, its metadata first, its weights later.

Only the config and tokenizer files are fetched when a model is chosen, so chunking and the
memory estimate can start at once; the weights (gigabytes) download in the background.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuneflow.core.model_catalogue import (
    ModelFacts,
    curated_model,
    hub_id_problem,
    model_dir_problem,
    read_model_facts,
)
from finetuneflow.core.progress import CancelToken, ProgressSink, ignore_progress
from finetuneflow.core.project_settings import ModelRef, ModelSource
from finetuneflow.services.errors import UserError
from finetuneflow.services.secrets import Secret, get_secret

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

log = logging.getLogger(__name__)
Rechunk = Callable[[str], object]  # re-cuts a project's chunks, given its id

METADATA_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                  "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
                  "generation_config.json", "vocab.json", "merges.txt")
REQUIRED_METADATA = ("config.json",)
WEIGHT_PATTERNS = ["*.safetensors", "*.json", "*.jinja", "*.model", "*.txt"]


class GatedModelError(UserError):
    """The model needs an accepted licence and a Hugging Face token."""


def gated_message(model_id: str) -> str:
    return (f"{model_id} is gated: accept its licence on https://huggingface.co/{model_id} "
            "and add your Hugging Face token in Settings (or set HF_TOKEN).")


@dataclass(frozen=True)
class ModelChoice:
    ref: str               # what the project records: a Hub id or an absolute folder path
    source: ModelSource
    folder: Path           # where config.json and the tokenizer are on disk
    facts: ModelFacts
    weights_ready: bool

    def to_json(self) -> dict[str, Any]:
        return {"model": self.ref, "source": self.source, "folder": str(self.folder),
                "weights_ready": self.weights_ready, **self.facts.to_json()}


def _hub_error_message(error: Exception, model_id: str, file_name: str = "") -> str:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    if isinstance(error, GatedRepoError):
        return gated_message(model_id)
    if isinstance(error, RepositoryNotFoundError):
        return (f"There is no model “{model_id}” on the Hugging Face Hub (or it is private: "
                "add a token in Settings). Check the spelling.")
    if isinstance(error, OfflineModeIsEnabled | LocalEntryNotFoundError):
        return (f"{model_id} is not on this computer and the Hugging Face Hub cannot be reached "
                "(offline). Connect to the internet, or choose a model folder on this computer.")
    if isinstance(error, EntryNotFoundError):
        return f"{model_id} has no {file_name or 'such file'}: it is not a transformers model."
    return f"Could not fetch {model_id} from the Hugging Face Hub: {error}"


def fetch_metadata(model_id: str, cancel: CancelToken | None = None) -> Path:
    """Download the config and tokenizer files of a Hub model; return their folder."""
    from huggingface_hub import hf_hub_download

    token = get_secret(Secret.HF_TOKEN)
    folder: Path | None = None
    for name in METADATA_FILES:
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            folder = Path(hf_hub_download(model_id, name, token=token)).parent
        except Exception as error:  # the hub library raises many types; all end the same way
            if name in REQUIRED_METADATA:
                from huggingface_hub.errors import GatedRepoError

                kind = GatedModelError if isinstance(error, GatedRepoError) else UserError
                raise kind(_hub_error_message(error, model_id, name)) from None
            log.info("optional %s of %s not fetched: %s", name, model_id, type(error).__name__)
    assert folder is not None
    return folder


def _weights_present(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


class ModelService:
    def __init__(self, context: AppContext) -> None:
        self._context = context

    def resolve(self, ref: str, cancel: CancelToken | None = None) -> ModelChoice:
        """Check a local folder or a Hub id and read its facts (fetching metadata if needed)."""
        ref = ref.strip()
        local = Path(ref).expanduser()
        if local.exists() or ref.startswith((".", "/", "~")) or "\\" in ref:
            problem = model_dir_problem(local)
            if problem:
                raise UserError(problem)
            folder = local.resolve()
            return ModelChoice(str(folder), "local", folder, read_model_facts(folder),
                               _weights_present(folder))
        problem = hub_id_problem(ref)
        if problem:
            raise UserError(problem)
        curated = curated_model(ref)
        if curated is not None and curated.gated and not get_secret(Secret.HF_TOKEN):
            raise GatedModelError(gated_message(ref))
        folder = fetch_metadata(ref, cancel)
        return ModelChoice(ref, "hub", folder, read_model_facts(folder), _weights_present(folder))

    def cached(self, model_id: str, cache_dir: Path | None = None) -> ModelChoice | None:
        """A Hub model whose config and tokenizer are already in the Hugging Face cache, found
        without the network; None when they are not there."""
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(model_id, "config.json", cache_dir=cache_dir)
        if not isinstance(config, str):
            return None
        folder = Path(config).parent
        if model_dir_problem(folder):
            return None
        return ModelChoice(model_id, "hub", folder, read_model_facts(folder),
                           _weights_present(folder))

    def choose(self, project_ref: str, ref: str, cancel: CancelToken | None = None, *,
               rechunk: Rechunk | None = None) -> ModelChoice:
        """Set the project's base model. Chunks depend on its tokenizer, so they are re-cut
        (by `rechunk`, given the project id: the GUI does it in a worker process)."""
        return self.use(project_ref, self.resolve(ref, cancel), rechunk=rechunk)

    def use(self, project_ref: str, choice: ModelChoice, *,
            rechunk: Rechunk | None = None) -> ModelChoice:
        """Record a model already resolved (or found in the cache) as the project's base."""
        with self._context.transaction() as tx:
            project_id = tx.projects.resolve(project_ref).id
            changed = tx.projects.save_model(project_id,
                                             ModelRef(choice.ref, choice.source, choice.folder))
        if changed:
            (rechunk or self._rechunk_here)(project_id)
        return choice

    def _rechunk_here(self, project_id: str) -> int:
        from finetuneflow.services.ingest import IngestService

        return IngestService(self._context).rechunk(project_id)

    def current(self, project_ref: str) -> ModelChoice | None:
        with self._context.transaction() as tx:
            stored = tx.projects.settings(project_ref).model
        if stored is None:
            return None
        if not (stored.folder / "config.json").is_file():
            return None  # the cache was cleared: the person has to choose again
        return ModelChoice(stored.ref, stored.source, stored.folder,
                           read_model_facts(stored.folder), _weights_present(stored.folder))

    def download_weights(self, project_ref: str, progress: ProgressSink = ignore_progress,
                         cancel: CancelToken | None = None) -> ModelChoice:
        """Fetch the weights of the project's Hub model (resumable: finished files are kept)."""
        choice = self.current(project_ref)
        if choice is None:
            raise UserError("Choose a base model first.")
        if choice.source == "local" or choice.weights_ready:
            return choice
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(
                choice.ref, allow_patterns=WEIGHT_PATTERNS, token=get_secret(Secret.HF_TOKEN),
                tqdm_class=_progress_bar_class(progress, cancel)))
        except UserError:
            raise
        except Exception as error:
            from finetuneflow.core.progress import Cancelled

            if isinstance(error, Cancelled):
                raise
            raise UserError(_hub_error_message(error, choice.ref)) from None
        return self.choose(project_ref, choice.ref) if folder else choice


def _progress_bar_class(progress: ProgressSink, cancel: CancelToken | None) -> type:
    """A tqdm subclass that forwards the hub's progress bars to a sink and honours cancel."""
    from tqdm.auto import tqdm

    class SinkBar(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs, file=_NullFile())

        def update(self, n: float | None = 1) -> bool | None:
            if cancel is not None:
                cancel.raise_if_cancelled()
            result = super().update(n)
            if self.total:
                progress(min(self.n / self.total, 1.0), f"Downloading {self.desc or 'weights'}")
            return result

    return SinkBar


class _NullFile:
    def write(self, _text: str) -> None: ...

    def flush(self) -> None: ...
