"""Where FineTuneFlow keeps its data: the home folder, the database and per-project folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from finetuneflow.core.safepath import safe_child

APP_NAME = "FineTuneFlow"
HOME_ENV = "FINETUNEFLOW_HOME"
PROJECT_SUBDIRS = ("raw", "chunks", "datasets", "artifacts", "logs", "exports")


def default_home() -> Path:
    """`FINETUNEFLOW_HOME` if set (tests, portable installs), else the OS's user data folder."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


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

    def project_file(self, project_uuid: str, subdir: str, *parts: str) -> Path:
        """A path under one of the project's folders; refuses anything that would escape it."""
        return safe_child(self.project_subdir(project_uuid, subdir), *parts)
