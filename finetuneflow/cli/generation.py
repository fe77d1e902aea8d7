"""`finetuneflow task set` and `finetuneflow generate`: the Task, Preview and Review steps."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from finetuneflow.cli.common import (
    add_json,
    ctrl_c_cancels,
    open_context,
    print_json,
    stderr_progress,
)
from finetuneflow.cli.status import print_next
from finetuneflow.core.generation.settings import (
    DEFAULT_BASE_URLS,
    DEFAULT_CONCURRENCY,
    LLMSettings,
)
from finetuneflow.core.progress import CancelToken
from finetuneflow.services.errors import UserError

if TYPE_CHECKING:
    from finetuneflow.services.generation import GenerationFailed

TASKS = ["qa", "instructions", "summary", "extraction", "custom"]
PROVIDERS = ["ollama-cloud", "ollama", "openai"]
STRUCTURED_MODES = ["auto", "json_schema", "json_object", "text"]


def cmd_task_set(args: argparse.Namespace) -> int:
    from finetuneflow.services.generation import GenerationService

    settings = GenerationService(open_context()).set_task(
        args.project, args.task, system_prompt=args.system_prompt, per_chunk=args.per_chunk)
    if args.json:
        print_json(settings.to_dict())
    else:
        print(f"{settings.type.value}: {settings.examples_per_chunk} examples per chunk")
        print_next(args.project)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from finetuneflow.services.generation import GenerationFailed, GenerationService

    service = GenerationService(open_context())
    llm = service.llm_settings(args.project)
    changes = {name: value for name, value in (
        ("provider", args.provider), ("base_url", args.base_url), ("model", args.llm),
        ("concurrency", args.concurrency), ("read_timeout", args.read_timeout),
        ("structured_mode", args.structured_output)) if value is not None}
    if args.structured_output is not None:
        changes["structured_output"] = True  # the mode says it all, "text" included
    if changes:
        llm = replace(llm, **changes)
        service.set_llm_settings(args.project, llm)
    elif not args.json:
        _announce_reused(args.project, llm)
    if warning := service.key_warning(llm):
        print(f"finetuneflow: warning: {warning}", file=sys.stderr)
    if args.full:  # the same estimate the Review page shows before a full run
        print(service.estimate(args.project, args.max_chunks).describe(), file=sys.stderr)
    cancel = CancelToken()
    with ctrl_c_cancels(cancel, "Stopping; finished chunks are kept…"):
        try:
            result = service.run(args.project, preview=args.preview, progress=stderr_progress,
                                 cancel=cancel, max_chunks=args.max_chunks)
        except GenerationFailed as failure:
            raise UserError(_cli_hint(failure)) from failure
    if not args.json and result.chunks_done:
        print(_usage_line(result.prompt_tokens, result.completion_tokens), file=sys.stderr)
    if result.unreadable:  # rejected, so a rerun does not ask again: say why
        print(f"finetuneflow: warning: {result.unreadable} answer(s) could not be read and "
              f"were rejected: {result.unreadable_reason}", file=sys.stderr)
    if result.structured_notice and not args.json:  # said once per run; --json has the key
        print(result.structured_notice, file=sys.stderr)
    if result.failures:  # some chunks failed after their retries: one line, grouped by cause
        print(f"finetuneflow: warning: {result.failures}; run the same command again to "
              "retry them (details in the log).", file=sys.stderr)
    if args.json:
        print_json(result.to_json())
    else:
        print(f"{result.chunks_done} chunks: {result.accepted} examples accepted, "
              f"{result.rejected} rejected" + (" (stopped early)" if result.cancelled else ""))
        if not result.cancelled:
            print_next(args.project)
    return 0


def _announce_reused(project_ref: str, llm: LLMSettings) -> None:
    """No LLM flag given: say which settings the run takes, and from where."""
    from finetuneflow.services.status import has_own_llm

    origin = "from last time" if has_own_llm(open_context(), project_ref) else "(app default)"
    url = llm.base_url or DEFAULT_BASE_URLS.get(llm.provider, "")
    model = llm.resolved_model or "no model"
    print(f"Using the LLM {origin}: {llm.provider} at {url}, model {model}, "
          f"{llm.resolved_concurrency} at once (change with --provider, --base-url, --llm)",
          file=sys.stderr)


def _usage_line(prompt: int | None, completion: int | None) -> str:
    if prompt is None or completion is None:  # never shown as 0
        return "Tokens: unknown (the server did not report its usage)."
    return f"Tokens: {prompt:,} prompt + {completion:,} completion."


def _cli_hint(failure: GenerationFailed) -> str:
    """The service's cause, with what to do worded in flags."""
    from finetuneflow.core.generation.errors import ContextTooSmallError, ModelNotFoundError

    error = failure.error
    if isinstance(error, ModelNotFoundError) and error.available:
        offered = ", ".join(error.available[:20])
        return f"{failure} Choose one with --llm NAME (the server offers: {offered})."
    if isinstance(error, ContextTooSmallError):
        return (f"{failure} Smaller chunks: finetuneflow ingest PROJECT FILES --chunk-tokens N; "
                "another model: --llm NAME.")
    return str(failure)


def register(commands: argparse._SubParsersAction) -> None:
    task = commands.add_parser("task", help="what the fine-tuned model should do")
    task_set = task.add_subparsers(dest="task_command", metavar="ACTION", required=True
                                   ).add_parser("set", help="set the project's task")
    task_set.add_argument("project")
    task_set.add_argument("task", choices=TASKS)
    task_set.add_argument("--system-prompt", metavar="TEXT")
    task_set.add_argument("--per-chunk", type=int, metavar="N", help="examples per chunk (3)")
    add_json(task_set)
    task_set.set_defaults(handler=cmd_task_set)

    generate = commands.add_parser("generate", help="write training examples with an LLM")
    generate.add_argument("project")
    mode = generate.add_mutually_exclusive_group(required=True)
    mode.add_argument("--preview", action="store_true", help="a few chunks, to check settings")
    mode.add_argument("--full", action="store_true", help="every chunk not done yet (resumes)")
    generate.add_argument("--provider", choices=PROVIDERS)
    generate.add_argument("--base-url", metavar="URL")
    generate.add_argument("--llm", metavar="MODEL", help="the LLM's model name")
    defaults = ", ".join(f"{n} for {p}" for p, n in DEFAULT_CONCURRENCY.items())
    generate.add_argument("--concurrency", type=int, metavar="N",
                          help=f"requests at once (default: {defaults}, as in the app)")
    generate.add_argument("--read-timeout", type=float, metavar="SECONDS",
                          help="give up on a request after this long without an answer (300)")
    generate.add_argument("--structured-output", choices=STRUCTURED_MODES,
                          help="how the JSON shape is asked for: auto tries json_schema, then "
                          "json_object, then the schema in the prompt (auto)")
    generate.add_argument("--max-chunks", type=int, metavar="N",
                          help="with --full: do at most N more chunks (a budget)")
    add_json(generate)
    generate.set_defaults(handler=cmd_generate)
