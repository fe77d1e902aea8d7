"""What the dashboard shows while the projects load: its heading and a note, so the first frame
already looks like the app. It needs Qt alone; the dashboard itself needs the database."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from finetuneflow.gui.styles import styled

PROJECTS_HEADING = "Your projects"
OPENING_TEXT = "Opening your projects…"


class DashboardPlaceholder(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("dashboardPlaceholder")
        # Centred by stretches, not an alignment flag: the first use of PySide6's Qt namespace
        # costs about 30 ms, a fifth of a bare window's start.
        note = QHBoxLayout()
        note.addStretch(1)
        note.addWidget(styled(QLabel(OPENING_TEXT, objectName="emptyState")))
        note.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(styled(QLabel(PROJECTS_HEADING, objectName="heading")))
        layout.addStretch(1)
        layout.addLayout(note)
        layout.addStretch(1)
