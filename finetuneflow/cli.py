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


# --- model, documents, datasets -----------------------------------------------------------------

def cmd_model_set(args: argparse.Namespace) -> int:
    from finetuneflow.services.models import ModelService

    choice = ModelService(_open_context()).choose(args.project, args.model)
    if args.json:
        print_json(choice.to_json())
    else:
        print(f"{choice.ref}: {choice.facts.describe()}")
        if not choice.weights_ready:
            print("The weights will be downloaded before training.", file=sys.stderr)
    return 0


def _stderr_progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def cmd_ingest(args: argparse.Namespace) -> int:
    from finetuneflow.core.chunking import ChunkSettings
    from finetuneflow.services.ingest import IngestService

    service = IngestService(_open_context())
    if args.chunk_tokens is not None or args.overlap is not None:
        current = service.chunk_settings(args.project)
        service.set_chunk_settings(args.project, ChunkSettings(
            max_tokens=args.chunk_tokens or current.max_tokens,
            overlap_tokens=current.overlap_tokens if args.overlap is None else args.overlap))
    outcomes = service.ingest(args.project, [Path(p) for p in args.paths],
                              password=args.password, progress=_stderr_progress)
    if args.json:
        print_json([outcome.to_json() for outcome in outcomes])
    else:
        for o in outcomes:
            pages = "-" if o.pages is None else o.pages
            print(f"{o.name}\t{o.status}\t{o.message or '-'}\tpages={pages}\tchars={o.chars}"
                  f"\tchunks={o.chunks}")
    if not outcomes:
        print("finetuneflow: error: no supported files found (PDF, DOCX, TXT, MD)",
              file=sys.stderr)
        return EXIT_USER_ERROR
    return 0 if any(o.status != "error" for o in outcomes) else EXIT_USER_ERROR


def cmd_dataset_import(args: argparse.Namespace) -> int:
    from finetuneflow.core.dataset.formats import CsvColumns
    from finetuneflow.services.datasets import DatasetService

    columns = None
    if args.prompt_column or args.completion_column:
        if not (args.prompt_column and args.completion_column):
            raise UserError("Give both --prompt-column and --completion-column.")
        columns = CsvColumns(args.prompt_column, args.completion_column, args.system_column)
    summary = DatasetService(_open_context()).import_file(
        args.project, Path(args.file), format=args.format, system_prompt=args.system_prompt,
        csv_columns=columns)
    if args.json:
        print_json(summary.to_json())
    else:
        print(f"{summary.file} ({summary.format}): {summary.imported} imported, "
              f"{summary.rejected} rejected, {summary.duplicates} already present")
        for error in summary.errors:
            print(f"  {error}")
        if summary.rejected > len(summary.errors):
            print(f"  … and {summary.rejected - len(summary.errors)} more rejected lines")
    return 0 if summary.imported or summary.duplicates else EXIT_USER_ERROR


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

    model = commands.add_parser("model", help="choose the base model")
    model_commands = model.add_subparsers(dest="model_command", metavar="ACTION", required=True,
                                          parser_class=_Parser)
    model_set = model_commands.add_parser("set", help="set a project's base model")
    model_set.add_argument("project")
    model_set.add_argument("model", metavar="MODEL_ID_OR_PATH",
                           help="a Hugging Face Hub id or a local model folder")
    _add_json(model_set)
    model_set.set_defaults(handler=cmd_model_set)

    ingest = commands.add_parser("ingest", help="add documents (PDF, DOCX, TXT, MD) or folders")
    ingest.add_argument("project")
    ingest.add_argument("paths", nargs="+", metavar="FILE_OR_FOLDER")
    ingest.add_argument("--password", help="password for encrypted PDFs")
    ingest.add_argument("--chunk-tokens", type=int, metavar="N", help="tokens per chunk (512)")
    ingest.add_argument("--overlap", type=int, metavar="N", help="tokens of overlap (50)")
    _add_json(ingest)
    ingest.set_defaults(handler=cmd_ingest)

    dataset = commands.add_parser("dataset", help="import or export training examples")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", metavar="ACTION",
                                              required=True, parser_class=_Parser)
    dataset_import = dataset_commands.add_parser("import", help="import an existing dataset")
    dataset_import.add_argument("project")
    dataset_import.add_argument("file")
    dataset_import.add_argument("--format", default="auto",
                                choices=["auto", "messages", "prompt-completion", "alpaca",
                                         "sharegpt", "csv"])
    dataset_import.add_argument("--system-prompt", help="add this system prompt to every example")
    dataset_import.add_argument("--prompt-column", metavar="NAME", help="CSV: the prompt column")
    dataset_import.add_argument("--completion-column", metavar="NAME",
                                help="CSV: the answer column")
    dataset_import.add_argument("--system-column", metavar="NAME",
                                help="CSV: an optional system prompt column")
    _add_json(dataset_import)
    dataset_import.set_defaults(handler=cmd_dataset_import)

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
