"""Activation checkpointing reaches SFTConfig under the name the installed transformers takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trl import SFTConfig

from finetuneflow.trainer.build import checkpointing_arguments


def test_the_installed_sft_config_takes_the_arguments_and_turns_checkpointing_on(
        tmp_path: Path) -> None:
    arguments = checkpointing_arguments(True)
    config = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False,
                       **arguments)
    (name,) = (key for key in arguments if key.endswith("_checkpointing"))
    assert getattr(config, name) is True
    assert getattr(config, f"{name}_kwargs") == {"use_reentrant": False}


def test_a_transformers_before_the_rename_gets_the_old_names() -> None:
    @dataclass
    class ArgumentsBeforeTheRename:  # the fields of transformers 5.0-5.1x
        gradient_checkpointing: bool = False
        gradient_checkpointing_kwargs: dict | None = None

    assert checkpointing_arguments(False, ArgumentsBeforeTheRename) == {
        "gradient_checkpointing": False, "gradient_checkpointing_kwargs": None}
