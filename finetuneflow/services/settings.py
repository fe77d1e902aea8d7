"""App-wide settings (not per project), kept in `settings.json` in the home folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from finetuneflow.core.atomic import atomic_write_text
from finetuneflow.core.generation import LLMSettings, ResponseLimits
from finetuneflow.core.generation.settings import KB, MB
from finetuneflow.core.training.config import PRESETS
from finetuneflow.services.errors import UserError

if TYPE_CHECKING:
    from finetuneflow.core.ingest import IngestLimits
    from finetuneflow.storage.home import Home

SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class AppSettings:
    max_file_mb: int = 200  # larger documents are refused before they are copied
    retry_smaller_on_oom: bool = False  # after running out of GPU memory, retry once, smaller
    default_preset: str = "balanced"  # the training preset a new project starts with
    llm: dict[str, Any] | None = None  # LLMSettings a new project starts with (never a key)
    # Zip-based documents (.docx): refused before unpacking when a part, or all parts, would
    # unpack beyond these sizes, or a big part packs more tightly than the ratio (a zip bomb).
    # The same defaults as IngestLimits (a test holds them equal; importing the loaders here
    # would double the import time of this module).
    max_part_mb: int = 128
    max_unpacked_mb: int = 512
    max_zip_ratio: int = 200
    # What one LLM answer may cost, whatever the server sends (see ResponseLimits).
    llm_max_answer_mb: int = 8
    llm_max_line_kb: int = 1024
    llm_deadline_s: float = 600.0
    # Dataset import limits, each met before the memory is spent.
    max_dataset_mb: int = 2048  # a larger dataset file is refused before it is read
    max_line_mb: int = 8  # a longer JSONL line is rejected without being read whole
    example_chars_per_token: int = 8  # longer examples (× training max length) are rejected

    def validate(self) -> AppSettings:
        self._validate_llm_limits()
        if not 1 <= self.max_file_mb <= 100_000:
            raise UserError("The file size limit must be between 1 MB and 100,000 MB.")
        self._validate_ingest_limits()
        if self.default_preset not in PRESETS:
            raise UserError(f"Unknown training preset {self.default_preset!r}: choose one of "
                            f"{', '.join(PRESETS)}.")
        if self.llm is not None and (problems := self.default_llm().problems()):
            raise UserError(" ".join(problems))
        self._validate_import_limits()
        return self

    def _validate_ingest_limits(self) -> None:
        if not 1 <= self.max_part_mb <= self.max_unpacked_mb <= 100_000:
            raise UserError("The unpacked size limits of a document must be between 1 MB and "
                            "100,000 MB, the limit per part no larger than the total.")
        if not 2 <= self.max_zip_ratio <= 100_000:
            raise UserError("The packing ratio limit of a document must be between 2 and "
                            "100,000.")

    def ingest_limits(self) -> IngestLimits:
        """What a document may cost to read, as these settings set it."""
        from finetuneflow.core.ingest.model import DEFAULT_LIMITS

        return replace(DEFAULT_LIMITS, max_bytes=self.max_file_mb * MB,
                       max_part_bytes=self.max_part_mb * MB,
                       max_unpacked_bytes=self.max_unpacked_mb * MB,
                       max_ratio=float(self.max_zip_ratio))

    def _validate_llm_limits(self) -> None:
        if not 1 <= self.llm_max_answer_mb <= 1024:
            raise UserError("The largest LLM answer must be between 1 and 1,024 MB.")
        if not 1 <= self.llm_max_line_kb <= 1024 * self.llm_max_answer_mb:
            raise UserError("The longest LLM stream line must be between 1 KB and the largest "
                            "answer.")
        if not 0 < self.llm_deadline_s <= 24 * 3600:
            raise UserError("The LLM request deadline must be between 0 and 86,400 seconds.")

    def response_limits(self) -> ResponseLimits:
        return ResponseLimits(max_answer_bytes=self.llm_max_answer_mb * MB,
                              max_line_bytes=self.llm_max_line_kb * KB,
                              deadline_s=self.llm_deadline_s)
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
