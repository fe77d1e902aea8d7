"""`finetuneflow trainer launch ACCELERATE_ARGS`: accelerate's launcher, run in this program.

A frozen app cannot run `python -m accelerate.commands.launch`, so the app runs the launcher
itself and the launcher starts each rank as the app's own `trainer` command (`--no_python`).
A checkout takes the same path, so the multi-process tests cover it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def launch(argv: list[str]) -> int:
    """Run the ranks to their end: 0 when all succeeded, 1 when one failed (its log says why)."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except ChildFailedError as failure:
        log.error("A training process failed:\n%s", failure.format_msg())
        return 1
    return 0
