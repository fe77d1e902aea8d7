"""The headless command line: the same services as the GUI, for servers and scripts.

Contract: `--json` writes JSON to stdout only; progress and messages go to stderr; a user error
is one line on stderr and exit code 1 (2 for a bad command line), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from finetuneflow import __version__
from finetuneflow.core.steps import STEP_KEYS
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.projects import ProjectService

EXIT_USER_ERROR = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts read stderr.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=None)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _open_context() -> AppContext:
    return AppContext.open()


# --- project ------------------------------------------------------------------------------------

def cmd_project_create(args: argparse.Namespace) -> int:
    context = _open_context()
    project = ProjectService(context).create(args.name)
    if args.json:
        print_json({"id": project.id, "name": project.name})
    else:
        print(project.id)
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    projects = ProjectService(_open_context()).list()
    if args.json:
        print_json([project.to_json() for project in projects])
        return 0
    if not projects:
        print("No projects yet. Create one with: finetuneflow project create NAME", file=sys.stderr)
    for project in projects:
        job = f"{project.latest_job_kind} {project.latest_job_status}" if project.latest_job_kind \
            else "-"
        print(f"{project.id}  {project.name}  [{project.current_step}]  "
              f"{project.base_model or 'no model'}  {job}")
    return 0


def cmd_project_delete(args: argparse.Namespace) -> int:
    project = ProjectService(_open_context()).delete(args.id)
    print(f"Deleted project {project.name!r} ({project.id}).", file=sys.stderr)
    return 0


# --- gui ----------------------------------------------------------------------------------------

def cmd_gui(args: argparse.Namespace) -> int:
    from finetuneflow.gui.app import run_gui

    return run_gui(project=args.project, page=args.page,
                   screenshot=Path(args.screenshot) if args.screenshot else None)


# --- parser -------------------------------------------------------------------------------------

def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="finetuneflow",
                     description="Fine-tune a language model on your own documents.")
    parser.add_argument("--version", action="version", version=f"FineTuneFlow {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    project = commands.add_parser("project", help="create, list and delete projects")
    project_commands = project.add_subparsers(dest="project_command", metavar="ACTION",
                                              required=True, parser_class=_Parser)
    create = project_commands.add_parser("create", help="create a project and print its id")
    create.add_argument("name")
    _add_json(create)
    create.set_defaults(handler=cmd_project_create)
    listing = project_commands.add_parser("list", help="list projects")
    _add_json(listing)
    listing.set_defaults(handler=cmd_project_list)
    delete = project_commands.add_parser("delete", help="delete a project and its files")
    delete.add_argument("id", help="project id, unique id prefix, or exact name")
    delete.set_defaults(handler=cmd_project_delete)

    gui = commands.add_parser("gui", help="open the app window")
    gui.add_argument("--project", help="open this project (id, id prefix or name)")
    gui.add_argument("--page", choices=STEP_KEYS, help="open the wizard at this step")
    gui.add_argument("--screenshot", metavar="FILE.png",
                     help="render the window to a PNG and exit (works offscreen)")
    gui.set_defaults(handler=cmd_gui)
    return parser


def run_cli(argv: list[str]) -> int:
    if argv and argv[0] == "trainer":
        print("finetuneflow: error: the trainer is not available in this version",
              file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UserError as error:
        print(f"finetuneflow: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("finetuneflow: interrupted", file=sys.stderr)
        return 130
