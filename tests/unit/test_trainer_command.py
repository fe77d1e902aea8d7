"""How the parent starts the trainer, in a checkout and in the frozen (PyInstaller) app."""

from __future__ import annotations

import sys

import pytest

from finetuneflow.services.trainer_process import trainer_command

APP = "/opt/finetuneflow/FineTuneFlow"


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """What PyInstaller's bootloader sets: `sys.frozen`, and the app as `sys.executable`."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", APP)


def test_a_checkout_runs_the_package_with_python_m() -> None:
    assert trainer_command("probe") == [sys.executable, "-m", "finetuneflow", "trainer", "probe"]


@pytest.mark.usefixtures("frozen")
def test_the_frozen_app_relaunches_itself() -> None:
    assert trainer_command("run", "job.json") == [APP, "trainer", "run", "job.json"]


@pytest.mark.usefixtures("frozen")
def test_the_frozen_app_runs_accelerate_and_each_rank_is_the_app_again() -> None:
    from accelerate.commands.launch import launch_command_parser

    command = trainer_command("run", "job.json", processes=2)
    assert command[:3] == [APP, "trainer", "launch"] and "-m" not in command
    launch = launch_command_parser().parse_args(command[3:])
    assert launch.multi_gpu and launch.num_processes == 2 and launch.no_python
    assert launch.training_script == APP
    assert launch.training_script_args == ["trainer", "run", "job.json"]
