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


def test_each_machine_of_a_multi_machine_run_joins_rank_0s_address_and_port() -> None:
    """What accelerate makes of the line: torchrun's nodes, this one's rank, the endpoint."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    from finetuneflow.services.trainer_process import Rendezvous

    command = trainer_command("run", "/r/job.json", processes=4, python="/venv/bin/python",
                              rendezvous=Rendezvous(2, 1, "10.0.0.5", 29611))
    assert command[:5] == ["/venv/bin/python", "-m", "finetuneflow", "trainer", "launch"]
    launch = launch_command_parser().parse_args(command[5:])
    assert launch.multi_gpu and launch.num_processes == 4 and launch.num_machines == 2
    assert launch.machine_rank == 1 and launch.main_process_ip == "10.0.0.5"
    assert launch.main_process_port == 29611
    assert launch.module and launch.training_script == "finetuneflow.trainer"
    assert launch.training_script_args == ["run", "/r/job.json"]
    launch = _validate_launch_command(launch)[0]  # what launch_command does first
    prepare_multi_gpu_env(launch)
    assert (launch.nnodes, launch.node_rank, launch.nproc_per_node) == ("2", 1, "2")
    assert launch.rdzv_endpoint == "10.0.0.5:29611"


def test_one_process_on_each_of_two_machines_still_runs_the_launcher() -> None:
    from finetuneflow.services.trainer_process import Rendezvous

    command = trainer_command("run", "job.json", processes=2,
                              rendezvous=Rendezvous(2, 0, "127.0.0.1", 29500))
    assert "launch" in command and command[command.index("--num_machines") + 1] == "2"
