"""Jobs and training runs: a job's and its run's status change in one call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetuneflow.storage.export_queries import ExportRunQueries

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class JobRepository:
    def __init__(self, session: Session) -> None:
        self._session = session


class RunRepository(ExportRunQueries):
    def __init__(self, session: Session) -> None:
        self._session = session
