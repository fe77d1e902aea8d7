"""The wizard's steps, in order. The CLI (`gui --page`), services and GUI all use this list."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    purpose: str


STEPS: tuple[Step, ...] = (
    Step("model", "Model", "Pick the base model to fine-tune: a curated small instruct model, "
         "any Hugging Face Hub id, or a model folder on this computer."),
    Step("task", "Task", "Say what the fine-tuned model should do — answer questions about your "
         "documents, follow instructions, summarise, extract — and the system prompt it carries."),
    Step("data", "Data", "Drop PDF, Word, text or Markdown files (or whole folders), or import a "
         "dataset you already have. Each file is checked and cut into chunks."),
    Step("preview", "Preview", "Connect an LLM (Ollama Cloud by default, local Ollama, or any "
         "OpenAI-compatible server) and preview a few generated examples before the full run."),
    Step("review", "Review", "Generate the full dataset, then search, edit and reject examples, "
         "check the statistics and write the train/eval split."),
    Step("hardware", "Hardware", "See what this computer can train: GPU, memory and disk, the "
         "LoRA or QLoRA recommendation with its memory estimate, and the training settings."),
    Step("train", "Train", "Train in a separate process with a live loss chart, progress and "
         "logs. Stop at any time; resume from the last checkpoint."),
    Step("export", "Export", "Export the adapter, a merged model ready for Ollama, metrics and "
         "a report as one zip, and try the model side by side with the base."),
)

STEP_KEYS: tuple[str, ...] = tuple(step.key for step in STEPS)


def step_index(key: str) -> int:
    try:
        return STEP_KEYS.index(key)
    except ValueError:
        raise ValueError(f"unknown step {key!r}: choose one of {', '.join(STEP_KEYS)}") from None
