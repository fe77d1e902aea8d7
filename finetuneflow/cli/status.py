"""`finetuneflow project status`: where a project stands and the next command to run."""

from __future__ import annotations

import argparse
import shlex
import sys

from finetuneflow.cli.common import add_json, open_context, print_json
from finetuneflow.services.missing_step import MissingStepError, NextStep
from finetuneflow.services.status import ProjectStatus, StatusService

# The command each next step asks for; PROJECT is filled in with the project's id.
NEXT_COMMANDS = {
    NextStep.MODEL: "finetuneflow model set {project} MODEL",
    NextStep.INGEST: "finetuneflow ingest {project} FILE_OR_FOLDER",
    NextStep.PREVIEW: "finetuneflow generate {project} --preview",
    NextStep.GENERATE: "finetuneflow generate {project} --full",
    NextStep.TRAIN: "finetuneflow train {project}",
    NextStep.EXPORT: "finetuneflow export {project}",
    NextStep.CHAT: "finetuneflow chat {project} PROMPT",
}


def next_command(step: NextStep, project_id: str) -> str:
    return NEXT_COMMANDS[step].format(project=shlex.quote(project_id))


def print_next(project_ref: str) -> None:
    """The last line of a step in human mode: the command to run next (on stderr, so stdout
    stays the step's data)."""
    status = StatusService(open_context()).status(project_ref)
    print(f"Next: {next_command(status.next_step, project_ref)}", file=sys.stderr)


def missing_step_message(error: MissingStepError, project_ref: str | None) -> str:
    """The cause and the command that fixes it, for the command line."""
    project = project_ref or error.project_id or "PROJECT"
    return f"{error.cause}: run {next_command(error.step, project)}"


def cmd_status(args: argparse.Namespace) -> int:
    status = StatusService(open_context()).status(args.project)
    command = next_command(status.next_step, args.project)
    if args.json:
        print_json(status.to_json() | {"next_command": command})
        return 0
    for line in describe(status):
        print(line)
    print(f"Next: {command}")
    return 0


def describe(status: ProjectStatus) -> list[str]:
    lines = [f"{status.name} ({status.id})", f"model\t{status.model or 'none'}",
             f"files\t{len(status.files)}"]
    lines += [f"  {name}\t{file_status}\t{chunks} chunks" for name, file_status, chunks
              in status.files]
    lines.append(f"chunks\t{status.chunks} ({status.chunks_without_examples} without examples)")
    examples = status.examples
    lines.append(f"examples\t{examples.get('accepted', 0)} accepted, "
                 f"{examples.get('edited', 0)} edited, {examples.get('rejected', 0)} rejected"
                 f" (preview: {status.preview_examples})")
    lines += [f"  rejected\t{count}\t{reason}" for reason, count
              in sorted(status.rejected_by_reason.items())]
    runs = ", ".join(f"{count} {state}" for state, count in sorted(status.runs.items()))
    latest = (f" (latest: run {status.latest_run[0]}, {status.latest_run[1]})"
              if status.latest_run else "")
    lines.append(f"runs\t{runs or 'none'}{latest}")
    lines.append(f"exports\t{status.exports}"
                 + (f" (latest: {status.latest_export})" if status.latest_export else ""))
    return lines


def register(actions: argparse._SubParsersAction) -> None:
    status = actions.add_parser("status", help="model, documents, examples, runs, exports "
                                               "and the next command to run")
    status.add_argument("project", help="project id, unique id prefix, or exact name")
    add_json(status)
    status.set_defaults(handler=cmd_status)
