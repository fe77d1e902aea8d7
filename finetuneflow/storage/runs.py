"""Jobs and training runs: a job's and its run's status change in one call."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class JobRepository:
    def __init__(self, session: Session) -> None:
        self._session = session


class RunRepository:
    def __init__(self, session: Session) -> None:
        self._session = session
