"""The protocol's stdout, kept apart from everything else that writes to stdout.

transformers' PrinterCallback, tqdm, bitsandbytes and third-party code print to stdout; one
stray line would corrupt the JSON-lines stream. So before the ML stack is imported, fd 1 is
duplicated for the protocol and fd 1 itself is pointed at stderr: any print, from Python or C,
lands in the log instead.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from finetuneflow.core.child_protocol import Event, encode


def is_main_rank() -> bool:
    """Under `accelerate launch` (torchrun) only global rank 0 reports."""
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value) == 0
    return True


class EventChannel:
    def __init__(self, stream: TextIO, *, enabled: bool = True) -> None:
        self._stream = stream
        self._enabled = enabled
        self._lock = threading.Lock()
        # Called once when the reader is gone (the app was killed): the run then stops after
        # the current step with a checkpoint instead of training on for nobody.
        self.on_lost: Callable[[], None] | None = None

    def emit(self, event: Event) -> None:
        if not self._enabled:
            return
        line = encode(event)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ConnectionResetError, ValueError):
                self._enabled = False
                if self.on_lost is not None:
                    self.on_lost()


def open_protocol_channel() -> EventChannel:
    """Take over fd 1 for the protocol and send everything else printed to stdout to stderr."""
    if sys.stdout is not None:
        sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)  # prints reach the log in order with stderr
    stream = os.fdopen(protocol_fd, "w", encoding="utf-8", newline="\n", buffering=1)
    return EventChannel(stream, enabled=is_main_rank())
