from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from typing import Any

from finetuneflow.core.export.report import (
    OllamaInfo,
    ReportInput,
    Sample,
    export_metrics,
    loss_curve_svg,
    render_report,
    token_length_stats,
)
from finetuneflow.core.training.config import TrainingConfig

SVG = "{http://www.w3.org/2000/svg}"


def trainer_metrics(**changes: Any) -> dict[str, Any]:
    """The shape trainer/run.py writes."""
    config = TrainingConfig(early_stopping_patience=2).to_dict()
    return {
        "run_id": "3", "model": "/home/someone/models/base", "device": "cpu", "method": "lora",
        "loss_on": "assistant", "reason": "completed", "steps": 8, "total_steps": 8,
        "trainable_params": 12_345, "total_params": 150_000, "final_eval_loss": 1.23456,
        "perplexity": 3.4367, "train_loss": 1.5, "runtime_s": 12.5, "tokens_seen": 4096,
        "tokens_per_second": 327.7, "peak_memory_bytes": 512 * 2**20,
        "best_checkpoint": "/home/someone/.../checkpoint-8",
        "loss_history": [{"step": 1, "loss": 2.5}, {"step": 4, "loss": 1.9},
                         {"step": 8, "loss": 1.4}],
        "eval_history": [{"step": 4, "eval_loss": 1.6}, {"step": 8, "eval_loss": 1.25},
                         {"step": 8, "eval_loss": 1.23456}],
        "config": config, **changes}


def test_metrics_keep_the_numbers_and_drop_local_paths() -> None:
    metrics = export_metrics(trainer_metrics(), "Training finished.")
    assert metrics["final_eval_loss"] == 1.23456 and metrics["tokens_seen"] == 4096
    assert metrics["best_eval_loss"] == 1.23456
    assert metrics["early_stopping"] == {
        "enabled": True, "patience": 2, "threshold": 0.0, "divergence_factor": 3.0,
        "triggered": False, "stopped_at_step": None, "best_checkpoint": "checkpoint-8",
        "message": "Training finished."}
    assert "/home/someone" not in json.dumps(metrics)

    early = export_metrics(trainer_metrics(reason="early_stopping", steps=6), "not improved")
    assert early["early_stopping"]["triggered"] and early["early_stopping"]["stopped_at_step"] == 6


def test_token_length_statistics() -> None:
    assert token_length_stats([]) == {"count": 0}
    stats = token_length_stats(list(range(1, 101)))
    assert stats == {"count": 100, "min": 1, "median": 50.5, "mean": 50.5, "p95": 95, "max": 100}


def _svg(text: str) -> ElementTree.Element:
    return ElementTree.fromstring(text)  # raises on anything that is not well-formed XML


def test_the_loss_curve_draws_both_losses() -> None:
    metrics = trainer_metrics()
    root = _svg(loss_curve_svg(metrics["loss_history"], metrics["eval_history"]))
    train, evaluation = root.findall(f"{SVG}polyline")
    assert len(train.get("points", "").split()) == 3
    assert len(evaluation.get("points", "").split()) == 2  # step 8 once
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "training loss" in labels and "evaluation loss" in labels and "step" in labels


def test_the_loss_curve_copes_with_no_data_a_flat_line_and_nan() -> None:
    empty = _svg(loss_curve_svg([], []))
    assert [t.text for t in empty.iter(f"{SVG}text")][-1] == "No loss values were logged."
    flat = _svg(loss_curve_svg([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 2.0},
                                {"step": 3, "loss": float("nan")}], []))
    (line,) = flat.findall(f"{SVG}polyline")
    assert len(line.get("points", "").split()) == 2


def report_input(**changes: Any) -> ReportInput:
    base = ReportInput(
        project="Manuals | Q&A", run_id=3, base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        revision="0123456789abcdef", exported_at="2026-11-27 20:00 UTC", task_type="qa",
        system_prompt="Answer from the manual.", metrics=export_metrics(trainer_metrics()),
        config=TrainingConfig().to_dict(),
        dataset={"train_examples": 40, "eval_examples": 5, "rejected": 3,
                 "rejected_by_reason": {"not grounded": 2, "duplicate": 1},
                 "token_lengths": token_length_stats([30, 40, 50])},
        examples=[[{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"},
                   {"role": "assistant", "content": "Use ```code``` here."}]],
        samples=[Sample("What is 2+2?", "4", "fi\x0bsh\x00", "4")], samples_held_out=True,
        sample_max_tokens=64, packages={"torch": "2.13.0", "peft": "0.21.2"},
        ollama=OllamaInfo("manuals-q-a", "ollama create manuals-q-a -f Modelfile", True, "",
                          "ChatML"),
        files=["adapter/adapter_model.safetensors", "report.md"])
    return replace(base, **changes)


def test_the_report_holds_the_numbers_and_the_sections() -> None:
    text = render_report(report_input())
    assert text.startswith("# Manuals | Q&A: fine-tuned HuggingFaceTB/SmolLM2-135M-Instruct")
    for expected in ("1.2346", "3.44", "4,096", "327.7 tokens/s", "512 MB", "8 of 8 (completed)",
                     "![Training and evaluation loss](loss_curve.svg)", "| not grounded | 2 |",
                     "median 40", "| Learning rate | `0.0002` | `learning_rate` |",
                     "### Example 1", "### Prompt 1", "**Fine-tuned**", "held-out",
                     "ollama create manuals-q-a -f Modelfile", "ollama run manuals-q-a",
                     "The Modelfile states the chat format (ChatML)", "| torch | 2.13.0 |",
                     "`0123456789ab`", "- `report.md`"):
        assert expected in text, expected
    assert "````text\nUse ```code``` here.\n````" in text  # a fence the content cannot close
    assert "```text\nfish\n```" in text  # control characters left out


def test_the_report_explains_what_ollama_cannot_do() -> None:
    unsupported = OllamaInfo("m", "ollama create m -f Modelfile", False,
                             "Ollama cannot import MistralForCausalLM safetensors directly.", None)
    text = render_report(report_input(ollama=unsupported, samples_held_out=False))
    assert "**Note:** Ollama cannot import MistralForCausalLM" in text
    assert "leaves the template to Ollama" in text
    assert "training prompts (there is no evaluation set)" in text
    assert "4-bit" not in text
    qlora = report_input(metrics={**export_metrics(trainer_metrics()), "method": "qlora"})
    assert "folded into the 16-bit weights" in render_report(qlora)
    without_merged = render_report(report_input(ollama=None, samples=[], examples=[]))
    assert "### In Ollama" not in without_merged and "## Before and after" not in without_merged


def test_epochs_steps_and_examples_come_from_the_run() -> None:
    """A run of 30 epochs set by max steps: the report says 30, not the Epochs setting (3.0);
    the example counts are the trainer's, not those of dataset files rewritten since."""
    config = TrainingConfig(max_steps=60, logging_steps=5).to_dict()
    measured = trainer_metrics(steps=60, total_steps=60, epochs=30.0, train_examples=12,
                               eval_examples=2, config=config)
    report = render_report(report_input(metrics=export_metrics(measured), config=config))
    assert "| Epochs | 30.0 (max steps 60 set the length, not the Epochs setting of 3.0) |" \
        in report
    assert "| Steps | 60 of 60 (completed) |" in report
    assert "| Examples | 12 for training, 2 held out for evaluation |" in report
    assert "12 training and 2 evaluation examples" in report
    assert "| `3.0` (not used: max steps is set) | `num_epochs` |" in report

    older = trainer_metrics(loss_history=[{"step": 8, "epoch": 2.0, "loss": 1.4}])
    assert export_metrics(older)["epochs"] == 2.0  # no count stored: the last logged epoch
    plain = render_report(report_input(metrics=export_metrics(older)))
    assert "| Epochs | 2.0 |" in plain
    assert "| Examples | 40 for training, 5 held out" in plain  # the files' count as before


def test_a_local_base_model_is_named_as_a_folder_to_replace() -> None:
    local = render_report(report_input(base_model="/models/my-llama", revision=None,
                                       base_local=True))
    assert "| Base model | `/models/my-llama` (a local folder, not a Hub id) |" in local
    assert "names its path as `base_model_name_or_path`" in local
    hub = render_report(report_input())
    assert "local folder" not in hub and "base_model_name_or_path" not in hub
