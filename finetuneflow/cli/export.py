"""`finetuneflow export` and `finetuneflow chat`: the Export step and "try your model"."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finetuneflow.cli.common import (
    EXIT_INTERRUPTED,
    add_json,
    ctrl_c_cancels,
    open_context,
    print_json,
    stderr_progress,
)
from finetuneflow.cli.status import print_next
from finetuneflow.core.export.gguf import QUANTISATIONS
from finetuneflow.core.export.modelfile import create_command
from finetuneflow.core.progress import Cancelled, CancelToken
from finetuneflow.core.terminal import printable
from finetuneflow.core.units import format_bytes
from finetuneflow.services.chat import ChatService
from finetuneflow.services.errors import UserError
from finetuneflow.services.export import (
    ADAPTER_GGUF,
    SAMPLE_TOKENS,
    ExportOptions,
    ExportResult,
    ExportService,
)


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser().resolve() if args.out else None
    if out is not None and out.suffix.lower() != ".zip":
        raise UserError(f"--out must name a .zip file, not {args.out!r}.")
    options = ExportOptions(run_id=args.run, merged=args.merged,
                            include_dataset=args.include_dataset, out=out,
                            sample_max_tokens=args.sample_tokens,
                            gguf=tuple(dict.fromkeys(args.gguf or ())),
                            gguf_adapter=args.gguf_adapter)
    cancel = CancelToken()
    with ctrl_c_cancels(cancel, "Stopping the export…"):
        try:
            result = ExportService(open_context()).export(
                args.project, options, progress=stderr_progress, cancel=cancel)
        except Cancelled:
            print("finetuneflow: export stopped; no zip was written.", file=sys.stderr)
            return EXIT_INTERRUPTED
    if args.json:
        print_json(result.to_json())
    else:
        print_result(result)
        print_next(args.project)
    return 0


def print_result(result: ExportResult) -> None:
    """The zip's path, then what it holds; how to import it into Ollama goes to stderr."""
    print(result.zip_path)
    for path, size in result.files:
        print(f"  {path}  ({format_bytes(size) if size >= 2**20 else f'{size:,} bytes'})")
    for entry in result.gguf:
        kind = " LoRA adapter" if entry.kind == ADAPTER_GGUF else ""
        print(f"GGUF{kind} {entry.quantisation.upper()}: {result.folder / entry.file}  "
              f"({format_bytes(entry.bytes)})", file=sys.stderr)
    models = bool(result.gguf_models)
    if result.ollama is not None:
        folder = "gguf" if models else "merged"
        note = "" if models else result.ollama.note
        print(note or f"Ollama: cd {result.folder / folder} && {result.ollama.command}",
              file=sys.stderr)
    if len(result.gguf_models) < len(result.gguf):  # the adapter GGUF too
        name = result.ollama.model_name if result.ollama else "NAME"
        print(f"Ollama, the adapter on its base: put the base model's F16 GGUF in "
              f"{result.folder / 'gguf'} under the name in Modelfile.adapter's FROM line, then "
              f"run {create_command(name)}.adapter there", file=sys.stderr)


def show_token(text: str) -> None:
    """One streamed piece of the answer; a model's escape sequences never reach the terminal."""
    sys.stdout.write(printable(text))
    sys.stdout.flush()


def cmd_chat(args: argparse.Namespace) -> int:
    cancel = CancelToken()
    # Loading a model takes seconds to minutes: say so, on stderr (stdout is the answer).
    print(f"Loading the {'base' if args.base else 'fine-tuned'} model…", file=sys.stderr,
          flush=True)
    with ctrl_c_cancels(cancel, "\nStopping…"):
        ChatService(open_context()).chat(
            args.project, args.prompt, run_id=args.run, base=args.base,
            system_prompt=args.system, temperature=args.temperature,
            max_tokens=args.max_tokens, on_token=show_token, cancel=cancel)
    sys.stdout.write("\n")
    return EXIT_INTERRUPTED if cancel.cancelled else 0


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="write the adapter, merged model, report and metrics into one zip")
    export.add_argument("project")
    export.add_argument("--run", type=int, metavar="RUN", help="the run (default: the latest "
                        "finished one)")
    export.add_argument("--merged", action=argparse.BooleanOptionalAction, default=None,
                        help="include the merged model for Ollama (default: when Ollama can "
                             "import the architecture)")
    export.add_argument("--include-dataset", action="store_true",
                        help="include train.jsonl and eval.jsonl")
    export.add_argument("--out", metavar="FILE.zip", help="where to write the zip")
    export.add_argument("--gguf", action="append", choices=QUANTISATIONS, metavar="QUANT",
                        help="also write the merged model as GGUF for LM Studio / llama.cpp / "
                             f"Ollama: {', '.join(QUANTISATIONS)} (repeat for several; q4_k_m "
                             "needs llama-cpp-python)")
    export.add_argument("--gguf-adapter", action="store_true",
                        help="also write the LoRA adapter alone as a GGUF (gguf/adapter-f16.gguf) "
                             "with gguf/Modelfile.adapter: FROM the base model's GGUF, ADAPTER "
                             "the adapter; for one base shared by several adapters")
    export.add_argument("--sample-tokens", type=int, default=SAMPLE_TOKENS, metavar="N",
                        help="longest before/after answer in the report, in tokens "
                             f"(default {SAMPLE_TOKENS})")
    add_json(export)
    export.set_defaults(handler=cmd_export)

    chat = commands.add_parser("chat", help="ask the fine-tuned (or base) model; streams the "
                                            "answer")
    chat.add_argument("project")
    chat.add_argument("prompt")
    chat.add_argument("--run", type=int, metavar="RUN", help="the run (default: the latest "
                      "finished one)")
    chat.add_argument("--base", action="store_true", help="ask the base model instead")
    chat.add_argument("--system", metavar="TEXT",
                      help="the system prompt (default: the task's)")
    chat.add_argument("--temperature", type=float, default=0.7, metavar="T",
                      help="0 for greedy decoding (default 0.7)")
    chat.add_argument("--max-tokens", type=int, default=256, metavar="N")
    chat.set_defaults(handler=cmd_chat)
