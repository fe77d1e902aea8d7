"""A project's settings, one typed section each: base model, task, chunking, LLM, training.

The sections reuse the dataclasses their steps already work with; `ProjectRepository` stores
them (one column each) and checks them on the way in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from finetuneflow.core.chunking import ChunkSettings
from finetuneflow.core.generation.settings import LLMSettings
from finetuneflow.core.generation.tasks import TaskSettings
from finetuneflow.core.training.config import TrainingConfig

ModelSource = Literal["hub", "local"]
MODEL_SOURCES: tuple[ModelSource, ...] = ("hub", "local")


@dataclass(frozen=True)
class ModelRef:
    """The chosen base model, as the project records it: its facts are read from `folder`."""

    ref: str              # a Hub id or an absolute folder path
    source: ModelSource
    folder: Path          # where config.json and the tokenizer are on disk


@dataclass(frozen=True)
class ProjectSettings:
    model: ModelRef | None = None           # None: not chosen yet
    task: TaskSettings = field(default_factory=TaskSettings)
    chunking: ChunkSettings = field(default_factory=ChunkSettings)
    llm: LLMSettings | None = None          # None: the app's default LLM (Settings)
    training: TrainingConfig | None = None  # None: the app's default preset
    note: str = ""                          # what the dashboard says about the project
    sample: bool = False                    # the sample project, which its button reopens
    train_on: str | None = None             # a machine's name (Settings → Machines); None: here
