"""`finetuneflow project create|list|rename|duplicate|delete|restore` and the app-wide
`settings`."""

from __future__ import annotations

import argparse
import sys

from finetuneflow.cli import status
from finetuneflow.cli.common import (
    EXIT_USER_ERROR,
    add_json,
    open_context,
    print_json,
    stderr_progress,
    subcommands,
)
from finetuneflow.core.training.config import PRESETS
from finetuneflow.services.projects import ProjectService


def cmd_create(args: argparse.Namespace) -> int:
    project = ProjectService(open_context()).create(args.name)
    if args.json:
        print_json({"id": project.id, "name": project.name})
    else:
        print(project.id)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    projects = ProjectService(open_context()).list()
    if args.json:
        print_json([project.to_json() for project in projects])
        return 0
    if not projects:
        print("No projects yet. Create one with: finetuneflow project create NAME", file=sys.stderr)
    for project in projects:
        job = (f"{project.latest_job_kind} {project.latest_job_status}"
               if project.latest_job_kind else "-")
        print(f"{project.id}  {project.name}  [{project.current_step}]  "
              f"{project.base_model or 'no model'}  {job}")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    project = ProjectService(open_context()).rename(args.project, args.name)
    if args.json:
        print_json(project.to_json())
    else:
        print(f"Renamed to {project.name!r} ({project.id}).", file=sys.stderr)
    return 0


def cmd_duplicate(args: argparse.Namespace) -> int:
    project = ProjectService(open_context()).duplicate(args.project, args.name)
    if args.json:
        print_json(project.to_json())
    else:
        print(project.id)
        print(f"Copied as {project.name!r}.", file=sys.stderr)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    service = ProjectService(open_context())
    found = service.get(args.id)  # a wrong name fails before any question
    if not args.yes and not _confirmed(f"Delete project {found.name!r} ({found.id}) and all "
                                       "its files? [y/N] "):
        return EXIT_USER_ERROR
    project = service.delete(found.id)
    print(f"Deleted project {project.name!r} ({project.id}).", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from finetuneflow.services.restore import RestoreService

    result = RestoreService(open_context()).restore(args.folder, args.name,
                                                    progress=stderr_progress)
    if args.json:
        print_json(result.to_json())
    else:
        print(result.project_id)
        print(result.describe(), file=sys.stderr)
    return 0


def _confirmed(question: str) -> bool:
    """Ask on a terminal. Without one (a script, a pipe) refuse: a script that deletes must say
    so with --yes, rather than lose a project to a command typed in the wrong place."""
    if not sys.stdin.isatty():
        print("finetuneflow: error: project delete asks before deleting; pass --yes to delete "
              "without a terminal", file=sys.stderr)
        return False
    print(question, end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() in {"y", "yes"}:
        return True
    print("Nothing deleted.", file=sys.stderr)
    return False


def register(commands: argparse._SubParsersAction) -> None:
    project = commands.add_parser("project",
                                  help="create, list, rename, duplicate and delete projects")
    actions = subcommands(project, "project_command")
    create = actions.add_parser("create", help="create a project and print its id")
    create.add_argument("name")
    add_json(create)
    create.set_defaults(handler=cmd_create)
    listing = actions.add_parser("list", help="list projects")
    add_json(listing)
    listing.set_defaults(handler=cmd_list)
    rename = actions.add_parser("rename", help="give a project a new name")
    rename.add_argument("project", help="project id, unique id prefix, or exact name")
    rename.add_argument("name", help="the new name")
    add_json(rename)
    rename.set_defaults(handler=cmd_rename)
    duplicate = actions.add_parser(
        "duplicate", help="copy a project's settings, documents and dataset (not its runs) "
                          "and print the copy's id")
    duplicate.add_argument("project", help="project id, unique id prefix, or exact name")
    duplicate.add_argument("--name", help="name of the copy (default: 'NAME (copy)')")
    add_json(duplicate)
    duplicate.set_defaults(handler=cmd_duplicate)
    delete = actions.add_parser("delete", help="delete a project and its files")
    delete.add_argument("id", help="project id, unique id prefix, or exact name")
    delete.add_argument("--yes", "-y", action="store_true",
                        help="delete without asking (needed when stdin is not a terminal)")
    delete.set_defaults(handler=cmd_delete)
    restore = actions.add_parser(
        "restore", help="bring back a project from a folder the database does not list "
                        "(see `finetuneflow doctor`) and print its id")
    restore.add_argument("folder", help="the project folder, its id, or a unique id prefix")
    restore.add_argument("--name", help="the project's name (needed when its project.json "
                                        "is missing or damaged)")
    add_json(restore)
    restore.set_defaults(handler=cmd_restore)
    status.register(actions)


def cmd_settings(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from finetuneflow.services.settings import AppSettings

    context = open_context()
    settings = AppSettings.load(context.home)
    changes = {name: value for name, value in (
        ("max_file_mb", args.max_file_mb),
        ("retry_smaller_on_oom", args.retry_smaller_on_oom),
        ("default_preset", args.default_preset),
        ("max_part_mb", args.max_part_mb),
        ("max_unpacked_mb", args.max_unpacked_mb),
        ("max_zip_ratio", args.max_zip_ratio),
        ("llm_max_answer_mb", args.llm_max_answer_mb),
        ("llm_max_line_kb", args.llm_max_line_kb),
        ("llm_deadline_s", args.llm_deadline),
        ("max_dataset_mb", args.max_dataset_mb),
        ("max_line_mb", args.max_line_mb),
        ("example_chars_per_token", args.example_chars_per_token)) if value is not None}
    if changes:
        settings = replace(settings, **changes)
        settings.save(context.home)
    if args.json:
        print_json(asdict(settings))
    else:
        for name, value in asdict(settings).items():
            print(f"{name}\t{value}")
    return 0


def register_settings(commands: argparse._SubParsersAction) -> None:
    settings = commands.add_parser("settings", help="show or change app-wide settings")
    settings.add_argument("--max-file-mb", type=int, metavar="N",
                          help="refuse documents larger than N MB (200)")
    settings.add_argument("--retry-smaller-on-oom", type=_yes_no, metavar="yes|no",
                          help="after running out of GPU memory, retry once with smaller "
                               "settings (no)")
    settings.add_argument("--default-preset", choices=list(PRESETS),
                          help="training preset new projects start with (balanced)")
    settings.add_argument("--max-part-mb", type=int, metavar="N",
                          help="refuse a .docx with a part that unpacks to more than N MB (128)")
    settings.add_argument("--max-unpacked-mb", type=int, metavar="N",
                          help="refuse a .docx whose parts unpack to more than N MB in all (512)")
    settings.add_argument("--max-zip-ratio", type=int, metavar="N",
                          help="refuse a .docx with a large part packed more than N times "
                               "smaller than its size (200)")
    settings.add_argument("--llm-max-answer-mb", type=int, metavar="N",
                          help="stop reading an LLM answer larger than N MB (8)")
    settings.add_argument("--llm-max-line-kb", type=int, metavar="N",
                          help="stop reading an LLM stream with a line longer than N KB (1024)")
    settings.add_argument("--llm-deadline", type=float, metavar="SECONDS",
                          help="end an LLM request still answering after this long (600)")
    settings.add_argument("--max-dataset-mb", type=int, metavar="N",
                          help="refuse dataset files larger than N MB (2048)")
    settings.add_argument("--max-line-mb", type=int, metavar="N",
                          help="reject dataset lines longer than N MB (8)")
    settings.add_argument("--example-chars-per-token", type=int, metavar="N",
                          help="reject imported examples longer than N characters per token of "
                               "the training's max length (8)")
    add_json(settings)
    settings.set_defaults(handler=cmd_settings)


def _yes_no(text: str) -> bool:
    if text.lower() not in {"yes", "no"}:
        raise argparse.ArgumentTypeError("answer yes or no")
    return text.lower() == "yes"
