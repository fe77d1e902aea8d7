"""Projects for GUI tests, made the way a person makes them: on the dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finetuneflow.gui.main_window import MainWindow
    from finetuneflow.services.context import AppContext


def project_with_examples(window: MainWindow, context: AppContext, model_dir: Path,
                          folder: Path, name: str, count: int) -> str:
    """A project made on the dashboard, with the tiny model and `count` arithmetic examples."""
    from finetuneflow.services.base_model import ModelService
    from finetuneflow.services.datasets import DatasetService

    project = window.dashboard.create_project(name)
    ModelService(context).choose(project.id, str(model_dir))
    data = folder / "d.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"{i} plus 1?", "completion": str(i + 1)})
                              for i in range(count)), encoding="utf-8")
    DatasetService(context).import_file(project.id, data)
    return project.id

