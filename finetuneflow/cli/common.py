"""What every command module shares: the parser class, JSON output, exit codes, progress."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from finetuneflow.core.progress import CancelToken
from finetuneflow.services.context import AppContext

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts read stderr.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=None)
    sys.stdout.write("\n")
    sys.stdout.flush()


def open_context() -> AppContext:
    return AppContext.open()


def stderr_progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def ctrl_c_cancels(cancel: CancelToken, message: str) -> Iterator[None]:
    """Ctrl-C sets the cancel token (the service stops cleanly) instead of raising."""
    def stop(_signum: int, _frame: object) -> None:
        print(message, file=sys.stderr, flush=True)
        cancel.cancel()

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def subcommands(parser: argparse.ArgumentParser, dest: str) -> argparse._SubParsersAction:
    return parser.add_subparsers(dest=dest, metavar="ACTION", required=True, parser_class=Parser)
