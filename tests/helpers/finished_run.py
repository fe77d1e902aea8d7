"""A finished training run of the tiny model, for the tests of what comes after training
(export, chat, the Export page): an arithmetic dataset and six real steps in the trainer child."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.export import ExportOptions, ExportResult, ExportService
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.trainer_process import run_trainer
from finetuneflow.services.training import RunRecorder, TrainingService
from finetuneflow.storage.home import Home

SYSTEM = "You answer arithmetic questions with one number."
TRAINING = {"max_steps": 6, "eval_steps": 2, "save_steps": 2, "logging_steps": 1,
            "per_device_batch_size": 4, "gradient_accumulation_steps": 1,
            "learning_rate": 1e-3, "max_seq_length": 128, "lora_r": 8, "lora_alpha": 16,
            "early_stopping_patience": 0, "warmup_ratio": 0.0}


def arithmetic_chats(path: Path, count: int = 100) -> Path:
    lines = [json.dumps({"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"What is {i} plus {i}?"},
        {"role": "assistant", "content": f"{2 * i}"}]}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train(context: AppContext, project_id: str) -> Path:
    """Train the project's dataset for a few steps; the adapter's folder."""
    training = TrainingService(context)
    prepared = training.prepare(project_id, training.config_for(project_id, "quick")
                                .replace(**TRAINING))
    recorder = RunRecorder(context, prepared)
    recorder.begin()
    code = run_trainer(["run", str(prepared.job_path)], prepared.log_path, recorder.handle_line)
    recorder.process_ended(code)
    assert code == 0, prepared.log_path.read_text()[-3000:]
    return Path(prepared.job.adapter_dir)


@dataclass
class ExportedRun:
    home: Path
    project_id: str
    base: Path  # the project's base model folder (a copy a test may edit)
    result: ExportResult


@contextmanager
def trained_and_exported(root: Path, model_dir: Path, name: str, options: ExportOptions
                         ) -> Iterator[ExportedRun]:
    """A project on a copy of the model (which a test may edit), trained a few steps and
    exported with `options`, in a home under `root`. One thread, so that logits compared
    with llama.cpp's come out the same every run."""
    base = root / "base"
    shutil.copytree(model_dir, base)
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    context = AppContext.open(Home(root / "home"))
    try:
        project_id = ProjectService(context).create(name).id
        ModelService(context).choose(project_id, str(base))
        DatasetService(context).import_file(project_id, arithmetic_chats(root / "chats.jsonl"))
        train(context, project_id)
        yield ExportedRun(root / "home", project_id, base,
                          ExportService(context).export(project_id, options))
    finally:
        context.close()
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = threads
