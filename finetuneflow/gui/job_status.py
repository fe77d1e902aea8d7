"""What runs now, in every project and process: a line in the status bar, refreshed each second.

Jobs are read from the jobs table, so a generation started from the command line shows up too;
work of this window that is no job (adding files) comes from `background_tasks()`.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel

from finetuneflow.gui.workers import background_tasks
from finetuneflow.services.context import AppContext
from finetuneflow.services.jobs import JobInfo, JobService
from finetuneflow.services.projects import ProjectService

REFRESH_MS = 1000
KIND_WORDS = {"preview": "Preview", "generate": "Generating", "train": "Training",
              "eval": "Evaluating", "export": "Exporting", "ingest": "Adding files to"}


def describe_running(job: JobInfo, project_name: str) -> str:
    return f"{KIND_WORDS.get(job.kind.value, job.kind.value)} “{project_name}” {job.progress:.0%}"


class JobStatus(QLabel):
    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.setObjectName("runningJobs")
        self.jobs = JobService(context)
        self.projects = ProjectService(context)
        self.timer = QTimer(self, interval=REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        background_tasks().changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        running = self.jobs.running()
        names = {p.id: p.name for p in self.projects.list()} if running else {}
        parts = [describe_running(job, names.get(job.project_id, "?")) for job in running]
        tips = [f"{part}: {job.message}" for part, job in zip(parts, running, strict=True)]
        in_window = background_tasks().describe()
        self.setText("   ·   ".join(parts + in_window))
        self.setToolTip("\n".join(tips + in_window))
