"""Where FineTuneFlow keeps its data: the home folder, the database and per-project folders."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetuneflow.core.atomic import atomic_write_text
from finetuneflow.core.safepath import safe_child

log = logging.getLogger(__name__)

APP_NAME = "FineTuneFlow"
HOME_ENV = "FINETUNEFLOW_HOME"
CONFIG_ENV = "FINETUNEFLOW_CONFIG_DIR"  # where the chosen home folder is recorded (tests)
LOCATION_FILE = "location.json"
PROJECT_SUBDIRS = ("raw", "chunks", "datasets", "artifacts", "logs", "exports")
MANIFEST = "project.json"
MANIFEST_SECTIONS = ("settings", "files")  # see Home.write_manifest
RESTORING = "project.restoring.json"  # the manifest as it was, while a restore is under way


def default_home() -> Path:
    """`FINETUNEFLOW_HOME` if set (tests, portable installs), else the folder the person moved
    the data to (Settings), else the OS's user data folder."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    return recorded_home() or platform_home()


def platform_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def location_file() -> Path:
    """Where a storage move records the home folder: outside the home, in the config folder."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser() / LOCATION_FILE
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / LOCATION_FILE


def recorded_home() -> Path | None:
    """The recorded home folder; None when none is recorded or it is gone (a drive unplugged:
    better the default folder than a new empty one in its place)."""
    try:
        folder = Path(json.loads(location_file().read_text(encoding="utf-8"))["home"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not folder.is_dir():
        log.warning("the recorded data folder %s is missing; using the default", folder)
        return None
    return folder


def record_home(folder: Path) -> None:
    atomic_write_text(location_file(), json.dumps({"home": str(folder)}, ensure_ascii=False))


class BrokenManifest(ValueError):
    """A project folder's `project.json` is missing or cannot be used."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def default(cls) -> Home:
        return cls(default_home())

    @property
    def db_path(self) -> Path:
        return self.root / "finetuneflow.db"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def storage_dir(self) -> Path:
        return self.root / "storage"

    def ensure(self) -> Home:
        for folder in (self.root, self.logs_dir, self.storage_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def project_dir(self, project_uuid: str) -> Path:
        return safe_child(self.storage_dir, project_uuid)

    def project_subdir(self, project_uuid: str, name: str) -> Path:
        if name not in PROJECT_SUBDIRS:
            raise ValueError(f"unknown project folder {name!r}")
        return self.project_dir(project_uuid) / name

    def create_project_dirs(self, project_uuid: str) -> Path:
        root = self.project_dir(project_uuid)
        for name in PROJECT_SUBDIRS:
            (root / name).mkdir(parents=True, exist_ok=True)
        return root

    def write_manifest(self, project_uuid: str, name: str, **recorded: dict[str, Any]) -> None:
        """`project.json` in the project's folder: its id and name, and what else is
        `recorded` (its settings, its documents' original names by stored path), so that the
        folder can be named, and its project restored, when the database no longer lists it.
        Sections not given are kept. A folder not made yet gets none."""
        if not self.project_dir(project_uuid).is_dir():
            return
        try:
            data = self.read_manifest(project_uuid)
        except BrokenManifest:
            data = {}
        data.update(id=project_uuid, name=name, **recorded)
        for section in MANIFEST_SECTIONS:  # a new project's: the defaults, no documents; a
            data.setdefault(section, {})  # changed one's are recorded when the change commits
        atomic_write_text(self.project_dir(project_uuid) / MANIFEST,
                          json.dumps(data, ensure_ascii=False, indent=1))

    def read_manifest(self, project_uuid: str) -> dict[str, Any]:
        """The folder's manifest, checked to name this folder's project."""
        path = self.project_dir(project_uuid) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BrokenManifest(path, "is missing") from None
        except OSError as error:
            raise BrokenManifest(path, f"cannot be read ({error.strerror})") from None
        except ValueError as error:
            raise BrokenManifest(path, f"is not valid JSON ({error})") from None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise BrokenManifest(path, "has no project name")
        if data.get("id") != project_uuid:
            raise BrokenManifest(path, f"names another project ({data.get('id')!r:.60})")
        return data

    def begin_restore(self, project_uuid: str) -> None:
        """Keep the manifest as it is before a restore writes rows (whose commits rewrite it).
        A restore that was stopped part way (a crash, a kill) left the copy: the manifest is
        put back from it, so the next attempt starts from what the folder first said."""
        folder = self.project_dir(project_uuid)
        kept, manifest = folder / RESTORING, folder / MANIFEST
        if kept.exists():
            if kept.stat().st_size:
                atomic_write_text(manifest, kept.read_text(encoding="utf-8"))
            else:
                manifest.unlink(missing_ok=True)  # there was none to begin with
            return
        original = manifest.read_text(encoding="utf-8") if manifest.is_file() else ""
        atomic_write_text(kept, original)

    def restore_unfinished(self, project_uuid: str) -> bool:
        """Whether a restore of this folder began and did not end."""
        return (self.project_dir(project_uuid) / RESTORING).exists()

    def end_restore(self, project_uuid: str) -> None:
        (self.project_dir(project_uuid) / RESTORING).unlink(missing_ok=True)

    def manifest_name(self, project_uuid: str) -> str | None:
        try:
            return str(self.read_manifest(project_uuid)["name"])
        except BrokenManifest:
            return None

    def project_folder_ids(self) -> list[str]:
        """The ids of the project folders under storage/."""
        if not self.storage_dir.is_dir():
            return []
        return sorted(entry.name for entry in self.storage_dir.iterdir() if entry.is_dir())

    def project_file(self, project_uuid: str, subdir: str, *parts: str) -> Path:
        """A path under one of the project's folders; refuses anything that would escape it."""
        return safe_child(self.project_subdir(project_uuid, subdir), *parts)
