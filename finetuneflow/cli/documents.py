"""`finetuneflow model set`, `ingest`, `dataset import|export`: the model and the data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finetuneflow.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    add_json,
    ctrl_c_cancels,
    open_context,
    print_json,
    stderr_progress,
    subcommands,
)
from finetuneflow.cli.status import print_next
from finetuneflow.core.progress import CancelToken
from finetuneflow.services.errors import UserError

DATASET_FORMATS = ["auto", "messages", "prompt-completion", "alpaca", "sharegpt", "csv"]


def cmd_model_set(args: argparse.Namespace) -> int:
    from finetuneflow.services.base_model import ModelService

    choice = ModelService(open_context()).choose(args.project, args.model)
    if args.json:
        print_json(choice.to_json())
    else:
        print(f"{choice.ref}: {choice.facts.describe()}")
        if choice.facts.export_note:
            print(choice.facts.export_note)
        if not choice.weights_ready:
            print("The weights will be downloaded before training.", file=sys.stderr)
        print_next(args.project)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from finetuneflow.core.chunking import ChunkSettings
    from finetuneflow.services.ingest import IngestService, nothing_added, printable

    service = IngestService(open_context())
    if args.chunk_tokens is not None or args.overlap is not None:
        current = service.chunk_settings(args.project)
        service.set_chunk_settings(args.project, ChunkSettings(
            max_tokens=args.chunk_tokens or current.max_tokens,
            overlap_tokens=current.overlap_tokens if args.overlap is None else args.overlap))
    cancel = CancelToken()
    with ctrl_c_cancels(cancel, "Stopping after the file being read; the files read are kept…"):
        outcomes = service.ingest(args.project, [Path(p) for p in args.paths],
                                  password=args.password, progress=stderr_progress,
                                  cancel=cancel)
    if args.json:
        print_json([outcome.to_json() for outcome in outcomes])
    else:
        for o in outcomes:
            pages = "-" if o.pages is None else o.pages
            print(f"{printable(o.name)}\t{o.status}\t{o.message or '-'}\tpages={pages}"
                  f"\tchars={o.chars}\tchunks={o.chunks}")
    if cancel.cancelled:
        print(f"Stopped after {len(outcomes)} file(s): run the same command again to add the "
              "rest (files already added are recognised).", file=sys.stderr)
        return EXIT_INTERRUPTED
    if failure := nothing_added(outcomes):
        raise UserError(failure)
    if not args.json:
        print_next(args.project)
    return 0


def cmd_dataset_import(args: argparse.Namespace) -> int:
    from finetuneflow.core.dataset.formats import CsvColumns
    from finetuneflow.services.datasets import STOPPED_IMPORT, DatasetService

    columns = None
    if args.prompt_column or args.completion_column:
        if not (args.prompt_column and args.completion_column):
            raise UserError("Give both --prompt-column and --completion-column.")
        columns = CsvColumns(args.prompt_column, args.completion_column, args.system_column)
    cancel = CancelToken()
    with ctrl_c_cancels(cancel, "Stopping after the lines being stored; they are kept…"):
        summary = DatasetService(open_context()).import_file(
            args.project, Path(args.file), format=args.format, system_prompt=args.system_prompt,
            csv_columns=columns, progress=stderr_progress, cancel=cancel)
    if args.json:
        print_json(summary.to_json())
    else:
        print(summary.describe())
        for error in summary.errors:
            print(f"  {error}")
        if summary.rejected > len(summary.errors):
            print(f"  … and {summary.rejected - len(summary.errors)} more rejected lines")
        if summary.stopped:
            print(STOPPED_IMPORT)
        elif summary.imported or summary.duplicates:
            print_next(args.project)
    if summary.stopped:
        return EXIT_INTERRUPTED
    return 0 if summary.imported or summary.duplicates else EXIT_USER_ERROR


def cmd_dataset_export(args: argparse.Namespace) -> int:
    from finetuneflow.services.datasets import DatasetService

    files = DatasetService(open_context()).export(args.project)
    if args.json:
        print_json(files.to_json())
    else:
        print(f"{files.train_path}\t{files.train} examples")
        print(f"{files.eval_path}\t{files.eval} examples")
        for reason, count in sorted(files.rejected_by_reason.items()):
            print(f"rejected\t{count}\t{reason}", file=sys.stderr)
        print_next(args.project)
    return 0


def register(commands: argparse._SubParsersAction,
             dataset_actions: argparse._SubParsersAction) -> None:
    _register_model(commands)
    _register_ingest(commands)
    _register_dataset_import(dataset_actions)
    export = dataset_actions.add_parser(
        "export", help="write train.jsonl and eval.jsonl (seeded split, grouped by chunk)")
    export.add_argument("project")
    add_json(export)
    export.set_defaults(handler=cmd_dataset_export)


def _register_model(commands: argparse._SubParsersAction) -> None:
    model = commands.add_parser("model", help="choose the base model")
    model_set = subcommands(model, "model_command").add_parser(
        "set", help="set a project's base model")
    model_set.add_argument("project")
    model_set.add_argument("model", metavar="MODEL_ID_OR_PATH",
                           help="a Hugging Face Hub id or a local model folder")
    add_json(model_set)
    model_set.set_defaults(handler=cmd_model_set)


def _register_ingest(commands: argparse._SubParsersAction) -> None:
    ingest = commands.add_parser("ingest", help="add documents (PDF, DOCX, TXT, MD) or folders")
    ingest.add_argument("project")
    ingest.add_argument("paths", nargs="+", metavar="FILE_OR_FOLDER")
    ingest.add_argument("--password", help="password for encrypted PDFs")
    ingest.add_argument("--chunk-tokens", type=int, metavar="N", help="tokens per chunk (512)")
    ingest.add_argument("--overlap", type=int, metavar="N", help="tokens of overlap (50)")
    add_json(ingest)
    ingest.set_defaults(handler=cmd_ingest)


def _register_dataset_import(dataset_actions: argparse._SubParsersAction) -> None:
    dataset_import = dataset_actions.add_parser("import", help="import an existing dataset")
    dataset_import.add_argument("project")
    dataset_import.add_argument("file")
    dataset_import.add_argument("--format", default="auto", choices=DATASET_FORMATS)
    dataset_import.add_argument("--system-prompt", help="add this system prompt to every example")
    dataset_import.add_argument("--prompt-column", metavar="NAME", help="CSV: the prompt column")
    dataset_import.add_argument("--completion-column", metavar="NAME",
                                help="CSV: the answer column")
    dataset_import.add_argument("--system-column", metavar="NAME",
                                help="CSV: an optional system prompt column")
    add_json(dataset_import)
    dataset_import.set_defaults(handler=cmd_dataset_import)
