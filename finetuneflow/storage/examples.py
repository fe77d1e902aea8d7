"""Dataset examples: the one content hash, inserts, filters, counts and the split."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class ExampleRepository:
    def __init__(self, session: Session) -> None:
        self._session = session
