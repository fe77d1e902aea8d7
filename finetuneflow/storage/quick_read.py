"""The projects list read straight from the database file with the standard library's sqlite3,
read-only, so the window can show it before SQLAlchemy and the migrations have loaded (a third
of a second). Anything unexpected (no file yet, an older schema, a damaged file) gives None:
the full data layer then opens the file and says what is wrong.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING

from finetuneflow.core.project_summary import ProjectSummary
from finetuneflow.core.statuses import JobStatus
from finetuneflow.core.steps import ProgressFacts

if TYPE_CHECKING:
    from pathlib import Path

PROJECTS_WITH_LATEST_JOB = """
SELECT p.id, p.name, p.base_model, p.current_step, p.created_at, p.updated_at, p.note,
       j.kind, j.status, j.updated_at
FROM projects AS p
LEFT JOIN (SELECT project_id, MAX(id) AS id FROM jobs GROUP BY project_id) AS latest
       ON latest.project_id = p.id
LEFT JOIN jobs AS j ON j.id = latest.id
"""


def read_project_list(db_path: Path) -> list[ProjectSummary] | None:
    """Every project with its latest job, most recently active first; None when the file
    cannot be read this way."""
    if not db_path.is_file():
        return None
    try:
        connection = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = connection.execute(PROJECTS_WITH_LATEST_JOB).fetchall()
        finally:
            connection.close()
        summaries = [_summary(row) for row in rows]
    except (sqlite3.Error, ValueError, TypeError):
        return None
    return sorted(sorted(summaries, key=lambda summary: summary.name),
                  key=lambda summary: summary.last_activity or summary.updated_at, reverse=True)


def _summary(row: tuple[object, ...]) -> ProjectSummary:
    (project_id, name, base_model, step, created, updated, note,
     job_kind, job_status, job_updated) = row
    updated_at = _moment(updated)
    activity = max(updated_at, _moment(job_updated)) if job_updated else updated_at
    return ProjectSummary(
        str(project_id), str(name), None if base_model is None else str(base_model), str(step),
        _moment(created), updated_at, None if job_kind is None else str(job_kind),
        None if job_status is None else JobStatus(str(job_status)), activity, str(note or ""))


def _moment(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"not a stored time: {value!r}")
    return datetime.fromisoformat(value)


# --- how far each project is, for the list's Step column (issue 14) ---------------------------

_KEPT = "status != 'rejected' AND split != 'preview'"
PROGRESS_COUNTS = {  # the same facts as ProjectRepository.progress_facts, in plain SQL
    "documents": "SELECT project_id, COUNT(DISTINCT file_id) FROM chunks GROUP BY project_id",
    "preview_examples": "SELECT project_id, COUNT(*) FROM dataset_examples "
                        "WHERE split = 'preview' GROUP BY project_id",
    "generated_examples": f"SELECT project_id, COUNT(*) FROM dataset_examples WHERE {_KEPT} "
                          "AND source != 'imported' GROUP BY project_id",
    "imported_examples": f"SELECT project_id, COUNT(*) FROM dataset_examples WHERE {_KEPT} "
                         "AND source = 'imported' GROUP BY project_id",
    "runs_succeeded": "SELECT project_id, COUNT(*) FROM runs WHERE status = 'succeeded' "
                      "GROUP BY project_id",
    "exports": "SELECT project_id, COUNT(*) FROM jobs WHERE kind = 'export' "
               "AND status = 'succeeded' GROUP BY project_id",
}


def read_progress(db_path: Path, storage_dir: Path) -> dict[str, ProgressFacts] | None:
    """Each project's progress facts by id, read like the list above; None when it cannot
    tell. `storage_dir` holds the projects' folders (their dataset files)."""
    if not db_path.is_file():
        return None
    try:
        connection = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = connection.execute("SELECT id, base_model_folder, task_config, training "
                                      "FROM projects").fetchall()
            counts = {name: dict(connection.execute(sql).fetchall())
                      for name, sql in PROGRESS_COUNTS.items()}
        finally:
            connection.close()
        return {str(project_id): ProgressFacts(
            model_chosen=folder is not None, task_chosen=bool(json.loads(task or "{}")),
            training_set=training is not None,
            dataset_written=(storage_dir / str(project_id) / "datasets" / "train.jsonl")
            .is_file(),
            **{name: int(found.get(project_id, 0)) for name, found in counts.items()})
            for project_id, folder, task, training in rows}
    except (sqlite3.Error, ValueError, TypeError):
        return None
