"""`finetuneflow doctor`: what is wrong with the data folder. It changes nothing (beyond the
schema upgrade any start of the app makes).

It answers even when the database cannot be opened: a damaged file is itself the finding, and
the project folders on disk are listed from their manifests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetuneflow.storage.db import BACKUP_INFIX, Database, DatabaseDamaged
from finetuneflow.storage.home import MANIFEST, BrokenManifest, Home


@dataclass(frozen=True)
class OrphanFolder:
    id: str
    path: str
    name: str | None  # from the folder's manifest, when it has one
    manifest_problem: str | None = None  # why project.json cannot be used; None when it can

    @classmethod
    def of(cls, home: Home, folder_id: str) -> OrphanFolder:
        try:
            name, problem = str(home.read_manifest(folder_id)["name"]), None
        except BrokenManifest as broken:
            name, problem = None, f"its {MANIFEST} {broken.reason}"
        return cls(folder_id, str(home.project_dir(folder_id)), name, problem)


def orphan_folders(home: Home, known: set[str]) -> list[OrphanFolder]:
    """The project folders under storage/ whose ids are not among the known projects, and
    those whose restore was stopped part way (their rows are incomplete)."""
    return [OrphanFolder.of(home, folder_id) for folder_id in home.project_folder_ids()
            if folder_id not in known or home.restore_unfinished(folder_id)]


@dataclass(frozen=True)
class HalfAddedFile:
    project: str
    file: str
    file_id: int


@dataclass
class DoctorReport:
    database: str
    database_status: str  # "ok", "missing", "damaged"
    detail: str = ""
    integrity: list[str] = field(default_factory=list)  # SQLite's findings; empty when fine
    backups: list[str] = field(default_factory=list)
    orphan_folders: list[OrphanFolder] = field(default_factory=list)
    half_added_files: list[HalfAddedFile] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return ((self.database_status == "damaged") + len(self.integrity)
                + len(self.orphan_folders) + len(self.half_added_files))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "problems": self.problems}


def examine(home: Home) -> DoctorReport:
    path = home.db_path
    report = DoctorReport(str(path), "ok" if path.is_file() else "missing", backups=[
        str(p) for p in sorted(path.parent.glob(f"{path.name}{BACKUP_INFIX}*"))])
    known: set[str] = set()
    if path.is_file():
        try:
            database = Database.open(path)
        except DatabaseDamaged as damage:
            report.database_status, report.detail = "damaged", str(damage)
        else:
            try:
                _examine_database(database, report, known)
            finally:
                database.close()
    report.orphan_folders = orphan_folders(home, known)
    return report


def _examine_database(database: Database, report: DoctorReport, known: set[str]) -> None:
    report.integrity = database.integrity_problems()
    with database.transaction() as tx:
        for project, _job in tx.projects.list_with_latest_job():
            known.add(project.id)
            report.half_added_files += [
                HalfAddedFile(project.name, file.original_name, file.id)
                for file in tx.documents.unfinished(project.id)]


def describe(report: DoctorReport) -> list[str]:
    """The report as lines for a person, each finding with what to do."""
    lines = [f"Database: {report.database} — {report.database_status}"]
    if report.detail:
        lines.append(f"  {report.detail}")
    lines += [f"  integrity: {problem}" for problem in report.integrity]
    if report.backups:
        lines.append(f"  copies made before upgrades: {', '.join(map(_name, report.backups))}")
    for orphan in report.orphan_folders:
        named = f"“{orphan.name}”" if orphan.name else orphan.manifest_problem
        restore = (f"finetuneflow project restore {orphan.id}" if orphan.name else
                   f"finetuneflow project restore {orphan.id} --name NAME")
        lines.append(f"Project folder not in the database: {orphan.path} ({named}); bring "
                     f"it back with `{restore}`.")
    for half in report.half_added_files:
        lines.append(f"File added only half way: {half.file} in “{half.project}”; adding it "
                     "again to the project finishes it.")
    lines.append("No problems found." if not report.problems
                 else f"{report.problems} problem(s) found.")
    return lines


def _name(path: str) -> str:
    return Path(path).name
