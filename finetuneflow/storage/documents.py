"""Documents: source files and their chunks, a file and all its chunks in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class DocumentRepository:
    def __init__(self, session: Session) -> None:
        self._session = session
