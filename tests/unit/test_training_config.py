"""TrainingConfig: the form metadata, validation messages, serialisation, presets, and the
early-stopping rule the trainer applies."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest

from finetuneflow.core.training.config import (
    ALL_LINEAR,
    PRESETS,
    TrainingConfig,
    field_metadata,
    preset_config,
)
from finetuneflow.core.training.stopping import DIVERGENCE, PATIENCE, EvalWatch
from tests.helpers.cli import REPO_ROOT

FIELDS = ("method", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate",
          "lr_scheduler", "warmup_ratio", "num_epochs", "max_steps", "per_device_batch_size",
          "gradient_accumulation_steps", "max_seq_length", "packing",
          "activation_checkpointing", "eval_steps", "save_steps", "logging_steps",
          "save_total_limit", "early_stopping_patience", "early_stopping_threshold",
          "divergence_factor", "seed", "assistant_only_loss")


def test_the_config_has_every_setting_with_form_metadata() -> None:
    names = tuple(item.name for item in dataclasses.fields(TrainingConfig))
    assert names == FIELDS
    for name, meta in field_metadata().items():
        assert meta["label"] and meta["help"].endswith((".", ")")), name
        assert isinstance(meta["advanced"], bool) and meta["group"], name
        if "choices" in meta:
            assert meta["default"] in meta["choices"], name
        elif isinstance(meta["default"], int | float) and not isinstance(meta["default"], bool):
            assert meta["min"] <= meta["default"] <= meta["max"], name
    assert field_metadata()["method"]["choices"] == ("lora", "qlora")
    assert not field_metadata()["learning_rate"]["advanced"]


def test_defaults_are_valid_and_validate_returns_the_config() -> None:
    config = TrainingConfig()
    assert config.validate() is config
    assert config.target_modules == ALL_LINEAR and config.assistant_only_loss == "auto"
    assert config.effective_batch_size == 16 and config.early_stopping_enabled


@pytest.mark.parametrize(("changes", "message"), [
    ({"learning_rate": 0.5}, "Learning rate must be between 1e-6 and 1e-2, not 0.5."),
    ({"learning_rate": 1e-7}, "Learning rate must be between 1e-6 and 1e-2, not 1e-7."),
    ({"lora_r": 0}, "LoRA rank must be between 1 and 256, not 0."),
    ({"lora_dropout": math.nan}, "LoRA dropout must be a finite number"),
    ({"method": "full"}, "Method must be one of lora, qlora, not 'full'."),
    ({"lr_scheduler": "step"}, "Learning-rate schedule must be one of"),
    ({"save_steps": 30}, "Checkpoint every (30 steps) must be a multiple of Evaluate every "
                         "(50 steps) when early stopping is on"),
    ({"divergence_factor": 0.9}, "Divergence guard must be 0 (off) or more than 1"),
    ({"target_modules": []}, "Target layers must name at least one layer"),
    ({"target_modules": ["q_proj", "v-proj"]}, "Target layers: 'v-proj' is not a layer name"),
    ({"target_modules": "everything"}, 'Target layers must be "all-linear" or a list'),
    ({"max_steps": 5}, "Max steps (5) is smaller than Log every (10)"),
    ({"save_total_limit": 1}, "Checkpoints kept must be between 2 and 100, not 1."),
])
def test_validation_explains_what_is_wrong(changes: dict, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        TrainingConfig(**changes).validate()
    assert str(raised.value).startswith(message)


def test_save_steps_need_not_follow_eval_steps_without_early_stopping() -> None:
    TrainingConfig(save_steps=30, early_stopping_patience=0).validate()
    TrainingConfig(save_steps=100, eval_steps=50).validate()
    TrainingConfig(target_modules=["q_proj", "v_proj"], divergence_factor=0.0).validate()


def test_to_dict_and_from_dict_round_trip_through_json() -> None:
    config = TrainingConfig(method="qlora", target_modules=["q_proj", "v_proj"], packing=True,
                            learning_rate=1e-4)
    restored = TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert TrainingConfig.from_dict({}) == TrainingConfig()


def test_from_dict_refuses_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(ValueError, match=r"Unknown training settings: epochs, lr\. Known"):
        TrainingConfig.from_dict({"lr": 1e-4, "epochs": 3})
    with pytest.raises(ValueError, match=r"LoRA rank must be a whole number, not 8\.5"):
        TrainingConfig.from_dict({"lora_r": 8.5})
    with pytest.raises(ValueError, match="Packing must be true or false, not 'yes'"):
        TrainingConfig.from_dict({"packing": "yes"})
    with pytest.raises(ValueError, match="Learning rate must be a number"):
        TrainingConfig.from_dict({"learning_rate": "fast"})
    # JSON has one number type: 8.0 is a whole number, 3 a valid float.
    config = TrainingConfig.from_dict({"lora_r": 8.0, "num_epochs": 3})
    assert config.lora_r == 8 and isinstance(config.lora_r, int)
    assert config.num_epochs == 3.0 and isinstance(config.num_epochs, float)


def test_presets_are_labelled_and_valid() -> None:
    assert list(PRESETS) == ["quick", "balanced", "thorough"]
    assert PRESETS["quick"].label == "Quick test"
    for name, preset in PRESETS.items():
        assert preset.description, name
        config = preset_config(name).validate()
        for key, value in preset.overrides.items():
            assert getattr(config, key) == value
    assert preset_config("balanced") == TrainingConfig()
    assert preset_config("quick", learning_rate=1e-3).learning_rate == 1e-3
    with pytest.raises(ValueError, match="Unknown preset 'fast'"):
        preset_config("fast")


def test_core_training_never_imports_the_ml_stack() -> None:
    code = ("import sys\n"
            "import finetuneflow.core.training.config, finetuneflow.core.child_protocol\n"
            "import finetuneflow.core.training.estimate, finetuneflow.core.training.recommend\n"
            "import finetuneflow.core.training.stopping\n"
            "heavy = {'torch', 'transformers', 'trl', 'peft', 'datasets', 'PySide6', "
            "'sqlalchemy'} & set(sys.modules)\n"
            "print(sorted(heavy))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- early stopping and the divergence guard -------------------------------------------------

def test_patience_counts_evaluations_without_improvement() -> None:
    watch = EvalWatch(patience=2)
    assert watch.observe(2.0) is None and watch.observe(1.5) is None
    assert watch.observe(1.6) is None  # one bad evaluation
    assert watch.observe(1.4) is None  # an improvement resets the count
    assert watch.observe(1.45) is None
    decision = watch.observe(1.5)
    assert decision is not None and decision.reason == PATIENCE
    assert "not improved for 2 evaluations (best 1.4000)" in decision.message


def test_an_improvement_must_beat_the_threshold() -> None:
    watch = EvalWatch(patience=2, threshold=0.1)
    watch.observe(1.0)
    assert watch.observe(0.95) is None  # better, but by less than 0.1
    decision = watch.observe(0.93)
    assert decision is not None and decision.reason == PATIENCE


def test_divergence_stops_on_a_loss_far_above_the_best_or_not_finite() -> None:
    watch = EvalWatch(divergence_factor=2.0)
    watch.observe(1.0)
    assert watch.observe(1.9) is None
    decision = watch.observe(2.5)
    assert decision is not None and decision.reason == DIVERGENCE
    assert "Lower the learning rate" in decision.message
    for bad in (math.nan, math.inf):
        assert EvalWatch(divergence_factor=3.0).observe(bad).reason == DIVERGENCE
    assert EvalWatch(divergence_factor=3.0).observe_train_loss(math.nan).reason == DIVERGENCE
    assert EvalWatch(divergence_factor=3.0).observe_train_loss(2.0) is None


def test_switched_off_rules_never_stop() -> None:
    watch = EvalWatch(patience=0, divergence_factor=0.0)
    for loss in (1.0, 5.0, 50.0, math.nan, 60.0):
        assert watch.observe(loss) is None
    assert watch.observe_train_loss(math.inf) is None


def test_replay_rebuilds_the_state_after_a_resume() -> None:
    history = [2.0, 1.5, 1.6]
    resumed = EvalWatch(patience=2)
    resumed.replay(history)
    assert resumed.best == 1.5 and resumed.evaluations_without_improvement == 1
    decision = resumed.observe(1.7)
    assert decision is not None and decision.reason == PATIENCE
