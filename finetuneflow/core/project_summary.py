"""A project as the projects list shows it: read by the services through SQLAlchemy, and at
start-up straight from the database file, before that layer has loaded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from finetuneflow.core.statuses import JobStatus


@dataclass(frozen=True)
class ProjectSummary:
    id: str
    name: str
    base_model: str | None
    current_step: str
    created_at: datetime
    updated_at: datetime
    latest_job_kind: str | None = None
    latest_job_status: JobStatus | None = None
    last_activity: datetime | None = None  # the project's or its latest job's last change
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name, "base_model": self.base_model,
            "current_step": self.current_step,
            "created_at": self.created_at.isoformat() + "Z",
            "updated_at": self.updated_at.isoformat() + "Z",
            "latest_job": None if self.latest_job_kind is None else
            {"kind": self.latest_job_kind, "status": str(self.latest_job_status)},
            "last_activity": (self.last_activity or self.updated_at).isoformat() + "Z",
            "note": self.note,
        }
