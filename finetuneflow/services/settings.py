"""App-wide settings (not per project), kept in `settings.json` in the home folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from finetuneflow.core.atomic import atomic_write_text
from finetuneflow.services.errors import UserError

if TYPE_CHECKING:
    from finetuneflow.storage.home import Home

SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class AppSettings:
    max_file_mb: int = 200  # larger documents are refused before they are copied
    retry_smaller_on_oom: bool = False  # after running out of GPU memory, retry once, smaller

    def validate(self) -> AppSettings:
        if not 1 <= self.max_file_mb <= 100_000:
            raise UserError("The file size limit must be between 1 MB and 100,000 MB.")
        return self

    @classmethod
    def load(cls, home: Home) -> AppSettings:
        try:
            data: dict[str, Any] = json.loads((home.root / SETTINGS_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return cls()
        known = {item.name for item in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known}).validate()
        except (TypeError, UserError):
            return cls()  # a hand-edited file with bad values: fall back, never crash

    def save(self, home: Home) -> None:
        self.validate()
        atomic_write_text(home.root / SETTINGS_FILE, json.dumps(asdict(self), indent=2))
