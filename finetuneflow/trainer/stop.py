"""A stop request: a `stop` line on stdin (every OS), SIGTERM (POSIX) or Ctrl-C.

Each only sets a flag; the training loop checks it after each optimiser step, saves a
checkpoint and ends cleanly, so a stopped run can always be resumed. A second Ctrl-C aborts at
once, for a user at a terminal who does not want to wait for the step to end.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import TextIO

from finetuneflow.core.child_protocol import STOP_COMMAND

log = logging.getLogger(__name__)


class StopSignal:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.source = ""

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, source: str) -> None:
        if not self._event.is_set():
            self.source = source
            log.info("Stop requested (%s): stopping after the current step", source)
        self._event.set()

    def listen(self, stdin: TextIO | None = None) -> None:
        """Watch stdin in a daemon thread and, on POSIX, SIGTERM."""
        stream = sys.stdin if stdin is None else stdin
        if stream is not None:
            threading.Thread(target=self._read_commands, args=(stream,), name="stdin-commands",
                             daemon=True).start()
        if hasattr(signal, "SIGTERM") and sys.platform != "win32":
            signal.signal(signal.SIGTERM, lambda signum, frame: self.request("SIGTERM"))
        signal.signal(signal.SIGINT, self._on_interrupt)

    def _on_interrupt(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.request("Ctrl-C; press it again to abort without a checkpoint")

    def _read_commands(self, stream: TextIO) -> None:
        # End of input means nothing: a parent may close stdin or start us without one.
        try:
            for line in stream:
                command = line.strip().lower()
                if command == STOP_COMMAND:
                    self.request("stdin")
                elif command:
                    log.warning("Ignored unknown command on stdin: %r", command[:80])
        except (OSError, ValueError):
            return
