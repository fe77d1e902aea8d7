"""The headless command line: the same services as the GUI, for servers and scripts.

Contract: `--json` writes JSON to stdout only; progress and messages go to stderr; a user error
is one line on stderr and exit code 1 (2 for a bad command line), never a traceback. Each
command group lives in its own module with a `register(commands)` function.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from finetuneflow import __version__
from finetuneflow.cli import (
    doctor,
    documents,
    evaluation,
    examples,
    export,
    generation,
    machines,
    projects,
    training,
)
from finetuneflow.cli.common import EXIT_USAGE, EXIT_USER_ERROR, Handler, Parser, subcommands
from finetuneflow.cli.status import missing_step_message
from finetuneflow.core.steps import STEP_KEYS
from finetuneflow.core.write_errors import write_problem
from finetuneflow.services.data_folder import default_home
from finetuneflow.services.errors import UserError
from finetuneflow.services.logs import LOG_FILE_NAME
from finetuneflow.services.missing_step import MissingStepError

EXIT_BUG = 70  # EX_SOFTWARE


def cmd_gui(args: argparse.Namespace) -> int:
    from finetuneflow.gui.system_libraries import run_gui_if_it_can_start

    return run_gui_if_it_can_start(
        project=args.project, page=args.page,
        screenshot=Path(args.screenshot) if args.screenshot else None)


def _register_gui(commands: argparse._SubParsersAction) -> None:
    gui = commands.add_parser("gui", help="open the app window")
    gui.add_argument("--project", help="open this project (id, id prefix or name)")
    gui.add_argument("--page", choices=STEP_KEYS, help="open the wizard at this step")
    gui.add_argument("--screenshot", metavar="FILE.png",
                     help="render the window to a PNG and exit (works offscreen)")
    gui.set_defaults(handler=cmd_gui)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="finetuneflow",
                    description="Fine-tune a language model on your own documents.")
    parser.add_argument("--version", action="version", version=f"FineTuneFlow {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    dataset = commands.add_parser("dataset", help="import or export training examples")
    dataset_actions = subcommands(dataset, "dataset_command")
    projects.register(commands)
    projects.register_settings(commands)
    documents.register(commands, dataset_actions)
    examples.register(dataset_actions)
    generation.register(commands)
    training.register(commands)
    export.register(commands)
    evaluation.register(commands)
    doctor.register(commands)
    machines.register(commands)
    _register_gui(commands)
    return parser


def run_cli(argv: list[str]) -> int:
    if argv and argv[0] == "trainer":
        from finetuneflow.trainer.cli import exit_process, main

        exit_process(main(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except MissingStepError as error:  # the CLI's words: the command that does the step
        message = missing_step_message(error, getattr(args, "project", None))
        print(f"finetuneflow: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except UserError as error:
        print(f"finetuneflow: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("finetuneflow: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: one line for the person, the traceback for the log
        logging.getLogger(__name__).exception("unexpected error in %s", argv[:1])
        if problem := write_problem(error, default_home()):  # a full disk is no bug
            print(f"finetuneflow: error: {problem}", file=sys.stderr)
            return EXIT_USER_ERROR
        log_file = default_home() / "logs" / LOG_FILE_NAME
        print(f"finetuneflow: unexpected error; details are in {log_file}", file=sys.stderr)
        return EXIT_BUG
