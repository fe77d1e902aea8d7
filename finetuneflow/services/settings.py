"""App-wide settings (not per project), kept in `settings.json` in the home folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from finetuneflow.core.atomic import atomic_write_text
from finetuneflow.core.generation import LLMSettings
from finetuneflow.core.training.config import PRESETS
from finetuneflow.services.errors import UserError

if TYPE_CHECKING:
    from finetuneflow.storage.home import Home

SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class AppSettings:
    max_file_mb: int = 200  # larger documents are refused before they are copied
    retry_smaller_on_oom: bool = False  # after running out of GPU memory, retry once, smaller
    default_preset: str = "balanced"  # the training preset a new project starts with
    llm: dict[str, Any] | None = None  # LLMSettings a new project starts with (never a key)
    # Dataset import limits, each met before the memory is spent (issue 15).
    max_dataset_mb: int = 2048  # a larger dataset file is refused before it is read
    max_line_mb: int = 8  # a longer JSONL line is rejected without being read whole
    example_chars_per_token: int = 8  # longer examples (× training max length) are rejected

    def validate(self) -> AppSettings:
        if not 1 <= self.max_file_mb <= 100_000:
            raise UserError("The file size limit must be between 1 MB and 100,000 MB.")
        if self.default_preset not in PRESETS:
            raise UserError(f"Unknown training preset {self.default_preset!r}: choose one of "
                            f"{', '.join(PRESETS)}.")
        if self.llm is not None and (problems := self.default_llm().problems()):
            raise UserError(" ".join(problems))
        self._validate_import_limits()
        return self

    def _validate_import_limits(self) -> None:
        if not 1 <= self.max_dataset_mb <= 100_000:
            raise UserError("The dataset file size limit must be between 1 MB and 100,000 MB.")
        if not 1 <= self.max_line_mb <= 1024:
            raise UserError("The dataset line length limit must be between 1 MB and 1,024 MB.")
        if not 1 <= self.example_chars_per_token <= 100:
            raise UserError("The characters per token of the longest example must be between "
                            "1 and 100.")

    def default_llm(self) -> LLMSettings:
        """The LLM settings for projects that have none of their own."""
        return LLMSettings.from_dict(self.llm) if self.llm else LLMSettings()

    def with_default_llm(self, settings: LLMSettings) -> AppSettings:
        return replace(self, llm=settings.to_dict())

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
