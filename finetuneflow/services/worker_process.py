"""CPU-heavy service calls (parsing documents, cutting chunks) in a child process.

The GUI's own threads share one interpreter lock with the window: a thread parsing a 100-page
PDF or tokenizing a novel takes the lock away from the event loop every few milliseconds and the
window stutters. A child process has its own, so the window stays smooth whatever it parses.

Protocol: the parent starts `finetuneflow worker` and writes one JSON request line on its stdin
(`{"home", "operation", "arguments"}`; secrets such as a PDF password travel here, never in the
command line). The child prints one JSON object per line on stdout: `progress`, then either
`result` or `error`. A `stop` line on stdin, or stdin closing (the parent died), cancels: the
operation ends after its current item and still reports what it finished.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from finetuneflow.core.child_protocol import STOP_COMMAND
from finetuneflow.core.progress import CancelToken, ProgressSink
from finetuneflow.services.child_process import child_environment, own_command, watch_cancel
from finetuneflow.services.errors import UserError

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext
    from finetuneflow.storage.home import Home

log = logging.getLogger(__name__)
WORKER_COMMAND = "worker"
WORKER_LOG = "worker.log"  # what a child prints before its logging is set up (a crash)
STOP_GRACE_SECONDS = 60.0  # the current file finishes first; a large PDF takes a while

Operation = Callable[["AppContext", dict[str, Any], ProgressSink, CancelToken], Any]


# --- parent side ------------------------------------------------------------------------------

def run_in_worker(home: Home, operation: str, arguments: dict[str, Any],
                  progress: ProgressSink, cancel: CancelToken, what: str) -> Any:
    """Run `operation` in a child and return its JSON result; blocks the calling thread only.

    A UserError in the child is raised here as a UserError with the same message; `what` names
    the work ("Adding files") in the message shown if the child dies.
    """
    log_path = home.logs_dir / WORKER_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    request = json.dumps({"home": str(home.root), "operation": operation,
                          "arguments": arguments})
    with log_path.open("ab") as errors:
        child = subprocess.Popen(own_command(WORKER_COMMAND), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=errors, env=child_environment())
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(request.encode() + b"\n")
        child.stdin.flush()
        watcher = watch_cancel(child, cancel, STOP_GRACE_SECONDS)
        try:
            outcome = _read_events(child.stdout, progress)
        finally:
            code = child.wait()
            watcher.set()
            _close(child.stdin)
    if outcome is None:
        raise UserError(f"{what} stopped unexpectedly (the worker process ended with code {code})."
                        f" What it finished is kept; try the rest again. Details: {log_path}")
    if outcome["event"] == "error":
        if outcome["user"]:
            raise UserError(outcome["message"])
        raise RuntimeError(outcome["message"])
    return outcome["value"]


def _read_events(stdout: IO[bytes], progress: ProgressSink) -> dict[str, Any] | None:
    """Pass progress on; return the final `result` or `error` event (None if none came)."""
    final = None
    for raw in stdout:
        try:
            event = json.loads(raw)
        except ValueError:
            log.warning("Ignored a line from the worker: %r", raw[:200])
            continue
        if event.get("event") == "progress":
            progress(float(event["fraction"]), str(event["message"]))
        elif event.get("event") in ("result", "error"):
            final = event
    return final


def _close(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError):  # a broken pipe: the child is gone, as closing wants
        stream.close()


# --- child side -------------------------------------------------------------------------------

def serve(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """`finetuneflow worker`: read the request, run it, print the events."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    try:
        request = json.loads(stdin.readline())
    except ValueError:
        print("finetuneflow worker is started by the app: it reads one JSON request on stdin.",
              file=sys.stderr)
        return 2
    cancel = CancelToken()
    threading.Thread(target=_listen_for_stop, args=(stdin, cancel), name="stdin-commands",
                     daemon=True).start()

    def emit(event: dict[str, Any]) -> None:
        try:
            stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            stdout.flush()
        except (OSError, ValueError):  # the parent is gone: nobody to tell, so stop
            cancel.cancel()

    def progress(fraction: float, message: str) -> None:
        emit({"event": "progress", "fraction": fraction, "message": message})

    try:
        value = _run(request, progress, cancel)
    except UserError as error:
        emit({"event": "error", "user": True, "message": str(error)})
    except Exception as error:
        log.error("Worker operation %s failed\n%s", request.get("operation"),
                  traceback.format_exc())
        emit({"event": "error", "user": False, "message": f"{type(error).__name__}: {error}"})
    else:
        emit({"event": "result", "value": value})
    return 0


def _run(request: dict[str, Any], progress: ProgressSink, cancel: CancelToken) -> Any:
    from finetuneflow.services.context import AppContext
    from finetuneflow.storage.home import Home

    operation = OPERATIONS.get(request["operation"])
    if operation is None:
        raise ValueError(f"unknown worker operation {request['operation']!r}")
    context = AppContext.open(Home(Path(request["home"])))
    try:
        return operation(context, request["arguments"], progress, cancel)
    finally:
        context.close()


def _listen_for_stop(stdin: IO[str], cancel: CancelToken) -> None:
    with contextlib.suppress(OSError, ValueError):
        for line in stdin:
            if line.strip().lower() == STOP_COMMAND:
                cancel.cancel()
    cancel.cancel()  # stdin closed: the parent is gone or wants nothing more


# --- operations -------------------------------------------------------------------------------

def _ingest(context: AppContext, arguments: dict[str, Any], progress: ProgressSink,
            cancel: CancelToken) -> list[dict[str, Any]]:
    from finetuneflow.services.ingest import IngestService

    outcomes = IngestService(context).ingest(
        arguments["project"], [Path(p) for p in arguments["paths"]],
        password=arguments.get("password"), progress=progress, cancel=cancel)
    return [outcome.to_json() for outcome in outcomes]


def _set_chunk_settings(context: AppContext, arguments: dict[str, Any], progress: ProgressSink,
                        cancel: CancelToken) -> int:
    from finetuneflow.core.chunking import ChunkSettings
    from finetuneflow.services.ingest import IngestService

    return IngestService(context).set_chunk_settings(
        arguments["project"], ChunkSettings(**arguments["settings"]), progress=progress)


def _rechunk(context: AppContext, arguments: dict[str, Any], progress: ProgressSink,
             cancel: CancelToken) -> int:
    from finetuneflow.services.ingest import IngestService

    return IngestService(context).rechunk(arguments["project"], progress)


def _import_dataset(context: AppContext, arguments: dict[str, Any], progress: ProgressSink,
                    cancel: CancelToken) -> dict[str, Any]:
    from finetuneflow.core.dataset.formats import CsvColumns
    from finetuneflow.services.datasets import DatasetService

    columns = arguments["csv_columns"]
    return DatasetService(context).import_file(
        arguments["project"], Path(arguments["path"]), format=arguments["format"],
        system_prompt=arguments["system_prompt"],
        csv_columns=CsvColumns(**columns) if columns else None, progress=progress,
        cancel=cancel).to_json()


def _gguf(context: AppContext, arguments: dict[str, Any], progress: ProgressSink,
          cancel: CancelToken) -> list[dict[str, Any]]:
    from finetuneflow.services.export import write_gguf_files

    return write_gguf_files(arguments, progress, cancel)


def _gguf_adapter(context: AppContext, arguments: dict[str, Any], progress: ProgressSink,
                  cancel: CancelToken) -> int:
    from finetuneflow.services.export import write_adapter_gguf

    return write_adapter_gguf(arguments, cancel)


OPERATIONS: dict[str, Operation] = {"ingest": _ingest, "set_chunk_settings": _set_chunk_settings,
                                    "rechunk": _rechunk, "import_dataset": _import_dataset,
                                    "gguf": _gguf,
                                    "gguf_adapter": _gguf_adapter}
