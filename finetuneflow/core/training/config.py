"""Training settings: one flat dataclass for the GUI form, the CLI, the database and the trainer.

Every field carries metadata (label, help, bounds, choices, whether it is advanced) so the
Hardware page can build its form from the dataclass instead of repeating the rules. `validate()`
explains problems in sentences a person can act on, because those messages reach the user as-is.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

ALL_LINEAR = "all-linear"
METHODS = ("lora", "qlora")
METHOD_LABELS = {"lora": "LoRA", "qlora": "QLoRA"}
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
ASSISTANT_ONLY_LOSS = ("auto", "off")


def _meta(label: str, help: str, *, group: str, advanced: bool = False,
          min: float | None = None, max: float | None = None,
          choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Field metadata for the settings form; None entries are left out."""
    meta: dict[str, Any] = {"label": label, "help": help, "group": group, "advanced": advanced}
    for key, value in (("min", min), ("max", max), ("choices", choices)):
        if value is not None:
            meta[key] = value
    return meta


@dataclass
class TrainingConfig:
    """Everything that decides how a LoRA/QLoRA run trains. Defaults are the "balanced" preset."""

    method: str = field(default="lora", metadata=_meta(
        "Method", "LoRA trains small adapter matrices on a 16-bit model. QLoRA loads the model in "
        "4-bit to fit a smaller GPU; it is a bit slower and needs an NVIDIA GPU.",
        group="Method", choices=METHODS))
    lora_r: int = field(default=16, metadata=_meta(
        "LoRA rank", "Size of the adapter matrices. Higher learns more but uses more memory; "
        "8–32 suits most tasks.", group="LoRA", min=1, max=256))
    lora_alpha: int = field(default=32, metadata=_meta(
        "LoRA alpha", "Scales the adapter's effect; usually twice the rank.",
        group="LoRA", advanced=True, min=1, max=1024))
    lora_dropout: float = field(default=0.05, metadata=_meta(
        "LoRA dropout", "Randomly drops adapter inputs during training to reduce overfitting.",
        group="LoRA", advanced=True, min=0.0, max=0.5))
    target_modules: list[str] | str = field(default=ALL_LINEAR, metadata=_meta(
        "Target layers", "Which layers get adapters: \"all-linear\" (every linear layer of the "
        "transformer blocks, recommended) or a list of layer names such as q_proj, v_proj.",
        group="LoRA", advanced=True))
    learning_rate: float = field(default=2e-4, metadata=_meta(
        "Learning rate", "How big each update is. 1e-4 to 3e-4 is typical for LoRA; lower it if "
        "the loss jumps around.", group="Optimisation", min=1e-6, max=1e-2))
    lr_scheduler: str = field(default="cosine", metadata=_meta(
        "Learning-rate schedule", "How the learning rate changes over the run.",
        group="Optimisation", advanced=True, choices=SCHEDULERS))
    warmup_ratio: float = field(default=0.03, metadata=_meta(
        "Warm-up", "Fraction of the run during which the learning rate ramps up from zero.",
        group="Optimisation", advanced=True, min=0.0, max=0.5))
    num_epochs: float = field(default=3.0, metadata=_meta(
        "Epochs", "How many times the training set is read. Used when \"Max steps\" is 0.",
        group="Length", min=0.1, max=100))
    max_steps: int = field(default=0, metadata=_meta(
        "Max steps", "Stop after this many optimiser steps; 0 means use the epochs.",
        group="Length", advanced=True, min=0, max=1_000_000))
    per_device_batch_size: int = field(default=4, metadata=_meta(
        "Batch size", "Examples processed at once on each GPU. Lower it if memory runs out.",
        group="Batch", min=1, max=512))
    gradient_accumulation_steps: int = field(default=4, metadata=_meta(
        "Gradient accumulation", "Batches summed before each update; batch size × this is the "
        "effective batch.", group="Batch", advanced=True, min=1, max=1024))
    max_seq_length: int = field(default=1024, metadata=_meta(
        "Max sequence length", "Longer examples are cut to this many tokens. Memory grows with it.",
        group="Batch", min=32, max=131_072))
    packing: bool = field(default=False, metadata=_meta(
        "Packing", "Put several short examples into one sequence: faster when lengths vary a lot.",
        group="Batch", advanced=True))
    activation_checkpointing: bool = field(default=False, metadata=_meta(
        "Activation checkpointing", "Recompute activations instead of storing them: much less "
        "memory, about 20–30% slower.", group="Batch", advanced=True))
    eval_steps: int = field(default=50, metadata=_meta(
        "Evaluate every", "Steps between evaluations on the held-out set.",
        group="Evaluation", advanced=True, min=1, max=100_000))
    save_steps: int = field(default=50, metadata=_meta(
        "Checkpoint every", "Steps between checkpoints you can resume from.",
        group="Evaluation", advanced=True, min=1, max=100_000))
    logging_steps: int = field(default=10, metadata=_meta(
        "Log every", "Steps between loss reports in the chart.",
        group="Evaluation", advanced=True, min=1, max=10_000))
    save_total_limit: int = field(default=3, metadata=_meta(
        "Checkpoints kept",
        "Older checkpoints are deleted to save disk space; the newest and the best are kept.",
        group="Evaluation", advanced=True, min=2, max=100))
    early_stopping_patience: int = field(default=3, metadata=_meta(
        "Early-stopping patience", "Stop when the evaluation loss has not improved for this many "
        "evaluations; 0 turns early stopping off.", group="Evaluation", advanced=True,
        min=0, max=100))
    early_stopping_threshold: float = field(default=0.0, metadata=_meta(
        "Early-stopping threshold", "How much the evaluation loss must drop to count as an "
        "improvement.", group="Evaluation", advanced=True, min=0.0, max=10.0))
    divergence_factor: float = field(default=3.0, metadata=_meta(
        "Divergence guard", "Stop when the evaluation loss rises above this multiple of the best "
        "one so far (or becomes NaN); 0 turns the guard off.", group="Evaluation",
        advanced=True, min=0.0, max=100.0))
    seed: int = field(default=42, metadata=_meta(
        "Random seed", "Same seed, data and settings give the same run.",
        group="Method", advanced=True, min=0, max=2**32 - 1))
    assistant_only_loss: str = field(default="auto", metadata=_meta(
        "Learn from", "\"auto\": learn only the assistant's replies, never the prompts (the "
        "trainer picks how, from the model's chat template). \"off\": learn the whole "
        "conversation, prompts included.", group="Method", advanced=True,
        choices=ASSISTANT_ONLY_LOSS))

    # --- derived values -------------------------------------------------------------------

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps

    @property
    def early_stopping_enabled(self) -> bool:
        return self.early_stopping_patience > 0

    # --- validation -----------------------------------------------------------------------

    def validate(self) -> TrainingConfig:
        """Raise ValueError with a sentence for the user if a setting is out of range; else self."""
        for item in dataclasses.fields(self):
            _check_field(item, getattr(self, item.name))
        _check_target_modules(self.target_modules)
        _check_combinations(self)
        return self

    # --- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if isinstance(self.target_modules, list):
            data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """Build from a dict (a job file, a JSON column); unknown keys are an error, not ignored."""
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown training setting{'s' if len(unknown) > 1 else ''}: "
                             f"{', '.join(unknown)}. Known settings: {', '.join(sorted(known))}.")
        values = {name: _coerce(name, value) for name, value in data.items()}
        return cls(**values)

    def replace(self, **changes: Any) -> TrainingConfig:
        return dataclasses.replace(self, **changes)


def describe_settings(config: TrainingConfig) -> str:
    """The settings a run trains with, in one line for people (the CLI prints it at the start)."""
    length = (f"{config.max_steps} steps" if config.max_steps
              else f"{_format_number(config.num_epochs)} epochs")
    targets = (config.target_modules if isinstance(config.target_modules, str)
               else ",".join(config.target_modules))
    parts = [
        f"{METHOD_LABELS.get(config.method, config.method)} rank {config.lora_r} "
        f"(alpha {config.lora_alpha}, dropout {_format_number(config.lora_dropout)}, "
        f"{targets})",
        length,
        f"batch {config.per_device_batch_size} × accumulation "
        f"{config.gradient_accumulation_steps} = {config.effective_batch_size}",
        f"max sequence {config.max_seq_length} tokens" + (", packed" if config.packing else ""),
        f"learning rate {_format_number(config.learning_rate)} ({config.lr_scheduler}, "
        f"warm-up {_format_number(config.warmup_ratio)})",
        f"evaluate every {config.eval_steps}, checkpoint every {config.save_steps}, log every "
        f"{config.logging_steps} steps",
        ("early stopping after " + str(config.early_stopping_patience) + " evaluations"
         if config.early_stopping_enabled else "no early stopping"),
    ]
    if config.activation_checkpointing:
        parts.append("activation checkpointing")
    parts.append(f"seed {config.seed}")
    return " · ".join(parts)


def field_metadata() -> dict[str, dict[str, Any]]:
    """Field name → metadata plus its default, in form order: what a settings form needs."""
    defaults = TrainingConfig()
    return {item.name: {**item.metadata, "default": getattr(defaults, item.name)}
            for item in dataclasses.fields(TrainingConfig)}


# --- presets ----------------------------------------------------------------------------------

class Preset(NamedTuple):
    label: str
    description: str
    overrides: dict[str, Any]


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "Quick test",
        "A few minutes: 60 steps with a small adapter, to check that everything works before a "
        "real run. The model will barely change.",
        {"lora_r": 8, "lora_alpha": 16, "max_steps": 60, "num_epochs": 1.0,
         "max_seq_length": 512, "eval_steps": 20, "save_steps": 20, "logging_steps": 5,
         "early_stopping_patience": 0, "warmup_ratio": 0.05},
    ),
    "balanced": Preset(
        "Balanced",
        "Three epochs with a rank-16 adapter on every linear layer and early stopping: a good "
        "result for most datasets of a few hundred to a few thousand examples.",
        {},
    ),
    "thorough": Preset(
        "Thorough",
        "Five epochs with a rank-32 adapter, a lower learning rate and more patience: slower, "
        "for larger datasets or harder tasks.",
        {"lora_r": 32, "lora_alpha": 64, "learning_rate": 1e-4, "num_epochs": 5.0,
         "early_stopping_patience": 5, "warmup_ratio": 0.05, "eval_steps": 100,
         "save_steps": 100, "save_total_limit": 4},
    ),
}


def preset_config(name: str, **overrides: Any) -> TrainingConfig:
    """The preset's settings on top of the defaults, then `overrides` on top of those."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}: choose one of {', '.join(PRESETS)}.")
    return TrainingConfig.from_dict({**PRESETS[name].overrides, **overrides})


# --- helpers ----------------------------------------------------------------------------------

_INT_FIELDS = {item.name for item in dataclasses.fields(TrainingConfig) if item.type == "int"}
_FLOAT_FIELDS = {item.name for item in dataclasses.fields(TrainingConfig) if item.type == "float"}
_BOOL_FIELDS = {item.name for item in dataclasses.fields(TrainingConfig) if item.type == "bool"}
_STR_FIELDS = {item.name for item in dataclasses.fields(TrainingConfig) if item.type == "str"}


def _label(name: str) -> str:
    label: str = TrainingConfig.__dataclass_fields__[name].metadata["label"]
    return label


def _coerce(name: str, value: Any) -> Any:
    """Accept what JSON gives (an int for a float, 3.0 for an int); refuse anything else."""
    label = _label(name)
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{label} must be true or false, not {value!r}.")
        return value
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise ValueError(f"{label} must be a whole number, not {value!r}.")
        return int(value)
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{label} must be a number, not {value!r}.")
        return float(value)
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise ValueError(f"{label} must be text, not {value!r}.")
        return value
    if name == "target_modules":
        return list(value) if isinstance(value, list | tuple) else value
    return value


def _scientific(value: float) -> bool:
    return value != 0 and not 1e-3 <= abs(value) < 1e6


def _format_number(value: float, *, scientific: bool = False) -> str:
    """1e-6 rather than 1e-06; plain digits for ordinary numbers."""
    if scientific or _scientific(value):
        mantissa, exponent = f"{value:e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:g}"


def _check_field(item: dataclasses.Field[Any], value: Any) -> None:
    meta = item.metadata
    label = meta["label"]
    if "choices" in meta and value not in meta["choices"]:
        raise ValueError(f"{label} must be one of {', '.join(meta['choices'])}, not {value!r}.")
    if "min" not in meta:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{label} must be a number, not {value!r}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{label} must be a finite number, not {value!r}.")
    low, high = meta["min"], meta["max"]
    if not low <= value <= high:
        scientific = _scientific(low) or _scientific(high)
        raise ValueError(f"{label} must be between {_format_number(low, scientific=scientific)} "
                         f"and {_format_number(high, scientific=scientific)}, not "
                         f"{_format_number(value)}.")


def _check_target_modules(value: list[str] | str) -> None:
    label = _label("target_modules")
    if isinstance(value, str):
        if value != ALL_LINEAR:
            raise ValueError(f"{label} must be \"{ALL_LINEAR}\" or a list of layer names, "
                             f"not {value!r}.")
        return
    if not isinstance(value, list) or not value:
        raise ValueError(f"{label} must name at least one layer, such as q_proj.")
    bad = [name for name in value if not isinstance(name, str) or not name.isidentifier()]
    if bad:
        raise ValueError(f"{label}: {', '.join(map(repr, bad))} is not a layer name "
                         "(letters, digits and underscores, such as q_proj).")


def _check_combinations(config: TrainingConfig) -> None:
    if 0 < config.divergence_factor <= 1:
        raise ValueError("Divergence guard must be 0 (off) or more than 1: it stops the run when "
                         "the evaluation loss exceeds that multiple of the best one.")
    if config.early_stopping_enabled and config.save_steps % config.eval_steps:
        raise ValueError(
            f"Checkpoint every ({config.save_steps} steps) must be a multiple of Evaluate every "
            f"({config.eval_steps} steps) when early stopping is on, so the best evaluated "
            "model is always saved.")
    if config.max_steps and config.max_steps < config.logging_steps:
        raise ValueError(f"Max steps ({config.max_steps}) is smaller than Log every "
                         f"({config.logging_steps}): the run would report no loss.")
