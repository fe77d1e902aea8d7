"""At start-up: jobs the app was running when it stopped, each with Resume and Dismiss."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from finetuneflow.gui.styles import styled
from finetuneflow.services.context import AppContext
from finetuneflow.services.jobs import JobInfo, JobService
from finetuneflow.services.projects import ProjectService

WHAT = {"preview": "The preview", "generate": "Generating the dataset",
        "train": "The training", "export": "The export", "eval": "The evaluation",
        "ingest": "Adding files"}
HOW = {"generate": "Resume continues at the first chunk without examples.",
       "train": "Resume continues from the last saved checkpoint.",
       "preview": "Resume makes the preview again.",
       "export": "Resume starts the export again.",
       "ingest": "Resume opens the Data step: add the files again; finished ones are kept."}


class ResumeBanner(QFrame):
    resume_requested = Signal(object)  # the JobInfo

    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.setObjectName("resumeBanner")
        styled(self)
        self.context = context
        self.jobs = JobService(context)
        self.projects = ProjectService(context)
        self.rows = QVBoxLayout(self)
        self.rows.setContentsMargins(10, 6, 10, 6)
        self.refresh()

    def refresh(self) -> None:
        while self.rows.count():
            widget = self.rows.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        names = {p.id: p.name for p in self.projects.list()}
        jobs = [job for job in self.jobs.resumable() if job.project_id in names]
        for job in jobs:
            self.rows.addWidget(self._row(job, names[job.project_id]))
        self.setVisible(bool(jobs))

    def _row(self, job: JobInfo, project_name: str) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        # A run that goes on on a machine is followed again, not resumed: its message says so.
        there = job.kind.value == "train" and self._on_a_machine(job.project_id)
        how = "" if there else HOW.get(job.kind.value, "")
        text = QLabel(f"<b>{WHAT.get(job.kind.value, job.kind.value)} of “{project_name}” was "
                      f"interrupted</b> ({job.progress:.0%} done): {job.message} {how}",
                      wordWrap=True)
        resume = QPushButton("Reattach" if there else "Resume", objectName=f"resumeJob{job.id}")
        dismiss = QPushButton("Dismiss", objectName=f"dismissJob{job.id}")
        resume.clicked.connect(lambda: self._resume(job))
        dismiss.clicked.connect(lambda: self._dismiss(job))
        layout.addWidget(text, 1)
        layout.addWidget(resume)
        layout.addWidget(dismiss)
        return row

    def _on_a_machine(self, project_id: str) -> bool:
        # Imported here: it loads the training service, which start-up does not need.
        from finetuneflow.services.remote_follow import reattachable

        return reattachable(self.context, project_id) is not None

    def _resume(self, job: JobInfo) -> None:
        self.jobs.dismiss(job.id)  # the resumed work gets a job of its own
        self.refresh()
        self.resume_requested.emit(job)

    def _dismiss(self, job: JobInfo) -> None:
        self.jobs.dismiss(job.id)
        self.refresh()
