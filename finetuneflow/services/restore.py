"""Bringing a project back from its folder when the database no longer lists it (the database
was deleted, replaced or damaged and recreated).

What comes back is what the folder holds: the project's id, name and settings (its manifest,
`project.json`), its documents (read again from `raw/`, so their chunks are cut again), its
dataset (the training files in `datasets/`, else the dataset files it imported, kept in `raw/`)
and its finished runs (`artifacts/run-N` with a finished event and an adapter). The review
state of examples, rejected examples and the history of jobs were only in the database: the
result says so. A project the database lists is never touched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuneflow.core.child_protocol import FinishedEvent, ProtocolError, TrainJob, decode
from finetuneflow.core.progress import CancelToken, ProgressSink, ignore_progress
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.doctor import OrphanFolder, orphan_folders
from finetuneflow.services.errors import NotFoundError, UserError
from finetuneflow.services.ingest import IngestService, expand_paths
from finetuneflow.services.jobs import process_alive
from finetuneflow.services.training import finished_outcome
from finetuneflow.storage.home import MANIFEST, BrokenManifest

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

log = logging.getLogger(__name__)

DATASET_FILES = ("train.jsonl", "eval.jsonl")  # what DatasetService.export writes
IMPORTED_DATASET_SUFFIXES = (".jsonl", ".json", ".csv")  # copies `dataset import` keeps in raw/
ADAPTER_WEIGHTS = "adapter_model.safetensors"
RESTORE_CLAIM = "project.restoring.pid"  # the process restoring the folder, while it does
EXAMPLES_NOTE = ("the review state of examples (rejected ones, edits, where each came from) is "
                 "only in the database, so every example comes back kept, as imported")


@dataclass
class RestoreResult:
    project_id: str
    name: str
    documents: int = 0  # read again from raw/
    chunks: int = 0
    examples: int = 0
    runs: int = 0
    not_restored: list[str] = field(default_factory=list)  # what did not come back, and why

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        counts = (f"Restored “{self.name}” ({self.project_id}): documents {self.documents}, "
                  f"chunks {self.chunks}, examples {self.examples}, runs {self.runs}.")
        return " ".join([counts, *(f"Not restored: {item}." for item in self.not_restored)])


class RestoreService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._home = context.home

    def orphans(self) -> list[OrphanFolder]:
        """The project folders the database does not list."""
        with self._context.transaction() as tx:
            known = {project.id for project, _job in tx.projects.list_with_latest_job()}
        return orphan_folders(self._home, known)

    def restore(self, ref: str, name: str | None = None,
                progress: ProgressSink = ignore_progress,
                cancel: CancelToken | None = None) -> RestoreResult:
        """Restore the project of one orphan folder (its path, id or a unique id prefix).
        `name` replaces the manifest's name, and lets a folder without a usable manifest
        come back with default settings."""
        folder_id = self._folder_id(ref)
        with self._only_restore_of(folder_id):
            self._home.begin_restore(folder_id)
            recorded, names, name, problem = self._manifest(folder_id, name)
            with self._context.transaction() as tx:
                if self._home.restore_unfinished(folder_id) and tx.projects.exists(folder_id):
                    tx.projects.delete(folder_id)  # a stopped restore's rows: start again
                project_id = tx.projects.restore(folder_id, name, recorded).id
            result = RestoreResult(project_id, name)
            if problem:
                result.not_restored.append(f"the settings: {problem}, so the defaults apply")
            progress(0.0, f"Restoring “{name}”")
            self._documents(result, names, progress, cancel)
            self._dataset(result, progress)
            self._runs(result)
            self._exports(result)
            if cancel is None or not cancel.cancelled:  # a stopped one can be run again
                self._home.end_restore(folder_id)
            progress(1.0, result.describe())
            return result

    def restore_all(self, progress: ProgressSink = ignore_progress,
                    cancel: CancelToken | None = None) -> tuple[list[RestoreResult], list[str]]:
        """Restore every orphan folder that can be; returns the results and, for each folder
        that could not be restored, why."""
        results: list[RestoreResult] = []
        failures: list[str] = []
        orphans = self.orphans()
        share = 1 / max(len(orphans), 1)
        for index, orphan in enumerate(orphans):
            if cancel is not None and cancel.cancelled:
                break

            def scaled(fraction: float, message: str, start: float = index * share) -> None:
                progress(start + fraction * share, message)

            try:
                results.append(self.restore(orphan.id, progress=scaled, cancel=cancel))
            except UserError as error:
                failures.append(str(error))
        return results, failures

    @contextmanager
    def _only_restore_of(self, folder_id: str) -> Iterator[None]:
        """One restore of a folder at a time: a second one (another window, another command)
        would take the first one's rows for those of a stopped restore and delete them. The
        claim of a restore that was killed is taken over."""
        claim = self._home.project_dir(folder_id) / RESTORE_CLAIM
        mine = claim.with_name(f"{RESTORE_CLAIM}.{os.getpid()}")
        mine.write_text(str(os.getpid()), encoding="utf-8")
        try:
            while True:
                try:
                    os.link(mine, claim)  # atomic: the claim appears with its pid in it
                    break
                except FileExistsError:
                    owner = _pid_in(claim)
                    if owner is not None and process_alive(owner):
                        raise UserError(f"{claim.parent} is being restored by another "
                                        f"FineTuneFlow process ({owner}): wait for it to "
                                        "end, then look at the projects list.") from None
                    claim.unlink(missing_ok=True)
        finally:
            mine.unlink(missing_ok=True)
        try:
            yield
        finally:
            claim.unlink(missing_ok=True)

    # --- which folder -------------------------------------------------------------------------

    def _folder_id(self, ref: str) -> str:
        storage = self._home.storage_dir
        folders = self._home.project_folder_ids()
        path = Path(ref).expanduser()
        if ref not in folders and path.is_dir():
            if path.resolve().parent != storage.resolve():
                raise UserError(f"{path} is not a project folder of the data folder: only "
                                f"folders in {storage} can be restored (copy it there first).")
            ref = path.resolve().name
        matches = [folder for folder in folders if folder == ref] or (
            [folder for folder in folders if folder.startswith(ref)] if len(ref) >= 4 else [])
        if len(matches) != 1:
            raise (UserError(f"{ref!r} matches several project folders: give more of the id.")
                   if matches else
                   NotFoundError(f"No project folder {ref!r} in {storage}. `finetuneflow "
                                 "doctor` lists the folders that can be restored."))
        with self._context.transaction() as tx:
            known = {project.id: project.name
                     for project, _job in tx.projects.list_with_latest_job()}
        if matches[0] in known and not self._home.restore_unfinished(matches[0]):
            raise UserError(f"The folder {storage / matches[0]} is project "
                            f"“{known[matches[0]]}”, which the database lists: there is "
                            "nothing to restore.")
        return matches[0]

    def _manifest(self, folder_id: str, name: str | None
                  ) -> tuple[dict[str, Any], dict[str, str], str, str | None]:
        """(recorded settings, documents' original names by stored path, name, why the
        settings could not be read or None)."""
        try:
            manifest = self._home.read_manifest(folder_id)
        except BrokenManifest as broken:
            if name is None:
                raise UserError(
                    f"Cannot restore {self._home.project_dir(folder_id)}: its {MANIFEST} "
                    f"{broken.reason}, so the project's name and settings are unknown. Give "
                    "it a name (project restore FOLDER --name NAME) to restore it with the "
                    "default settings.") from None
            return {}, {}, name, f"its {MANIFEST} {broken.reason}"
        files = manifest.get("files")
        names = ({stored: original for stored, original in files.items()
                  if isinstance(original, str) and original.strip()}
                 if isinstance(files, dict) else {})
        recorded = manifest.get("settings")
        if not isinstance(recorded, dict):
            # Folders made before the manifest recorded settings have only an id and a name.
            return {}, names, name or manifest["name"], "they were not recorded in the folder"
        return recorded, names, name or manifest["name"], None

    # --- what the folder holds ----------------------------------------------------------------

    def _documents(self, result: RestoreResult, names: dict[str, str], progress: ProgressSink,
                   cancel: CancelToken | None) -> None:
        raw = self._home.project_subdir(result.project_id, "raw")
        documents, _skipped = expand_paths([raw]) if raw.is_dir() else ([], [])
        if not documents:
            return
        outcomes = IngestService(self._context).ingest(
            result.project_id, documents, progress=lambda f, m: progress(f * 0.8, m),
            cancel=cancel)
        done = [outcome for outcome in outcomes if outcome.status != "error"]
        result.documents = len(done)
        result.chunks = sum(outcome.chunks for outcome in done)
        result.not_restored += [f"{outcome.name}: {outcome.message}" for outcome in outcomes
                                if outcome.status == "error"]
        if len(outcomes) < len(documents):
            result.not_restored.append(f"{len(documents) - len(outcomes)} document(s): "
                                       "stopped before they were read")
        if done and not result.chunks:
            result.not_restored.append("the chunks: the project's base model is not on this "
                                       "computer; they are cut once it is chosen again")
        with self._context.transaction() as tx:
            named = tx.documents.give_names(result.project_id, names)
        if named < len(outcomes):
            result.not_restored.append(f"the original names of {len(outcomes) - named} "
                                       "document(s): they are named after their copies in raw/")

    def _dataset(self, result: RestoreResult, progress: ProgressSink) -> None:
        datasets = self._home.project_subdir(result.project_id, "datasets")
        files = [datasets / name for name in DATASET_FILES
                 if (datasets / name).is_file() and (datasets / name).stat().st_size]
        raw = self._home.project_subdir(result.project_id, "raw")
        if not files:
            if result.documents:  # examples may have been written from them
                result.not_restored.append("examples not yet written to the training files "
                                           "in datasets/ (they were only in the database)")
            if raw.is_dir():
                files = sorted(path for path in raw.iterdir()
                               if path.suffix.lower() in IMPORTED_DATASET_SUFFIXES)
        service = DatasetService(self._context)
        for path in files:
            progress(0.9, f"Importing {path.name}")
            try:
                result.examples += service.import_file(result.project_id, path).imported
            except UserError as error:
                result.not_restored.append(f"the examples of {path.name}: {error}")
        if result.examples:
            result.not_restored.append(EXAMPLES_NOTE)

    def _runs(self, result: RestoreResult) -> None:
        artifacts = self._home.project_subdir(result.project_id, "artifacts")
        folders = sorted((path for path in artifacts.glob("run-*")
                          if path.name[4:].isdigit()), key=lambda path: int(path.name[4:]))
        for folder in folders:
            problem = self._restore_run(result.project_id, int(folder.name[4:]), folder)
            if problem:
                result.not_restored.append(f"run {folder.name[4:]}: {problem}")
            else:
                result.runs += 1

    def _restore_run(self, project_id: str, run_id: int, folder: Path) -> str | None:
        """Restore one run; why it could not be, or None."""
        try:
            job = TrainJob.read(folder / "job.json")
            finished = _finished_event(folder / "events.jsonl")
        except (ProtocolError, OSError) as error:
            return f"its job file or events cannot be read ({error})"
        if finished is None:
            return "it did not finish (only finished runs come back)"
        if not (Path(finished.adapter_dir) / ADAPTER_WEIGHTS).is_file():
            return "its adapter is missing"
        with self._context.transaction() as tx:
            if not tx.runs.restore_succeeded(project_id, run_id, job.config,
                                             *finished_outcome(finished)):
                return "another project's run has its number"
        return None

    def _exports(self, result: RestoreResult) -> None:
        exports = self._home.project_subdir(result.project_id, "exports")
        if exports.is_dir() and any(exports.iterdir()):
            result.not_restored.append(f"the export history: the exported files stay in "
                                       f"{exports}, but are not listed as exports")


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _finished_event(path: Path) -> FinishedEvent | None:
    """The run's finished event, if its events file has one."""
    finished = None
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if '"finished"' in line:
                event = decode(line)
                finished = event if isinstance(event, FinishedEvent) else finished
    return finished
