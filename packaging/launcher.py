"""The frozen app's entry point (see finetuneflow.spec).

`FineTuneFlow` opens the window, `FineTuneFlow COMMAND ...` is the CLI, and
`FineTuneFlow trainer ...` is the training child the app starts itself.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def give_missing_streams_a_sink() -> None:
    """A windowed app on Windows starts with no stdout/stderr (None), and a library that writes
    a warning there would crash it. A child started with pipes keeps its pipes."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


if __name__ == "__main__":
    # Worker processes of torch or datasets started with "spawn" re-enter this executable.
    multiprocessing.freeze_support()
    give_missing_streams_a_sink()
    from finetuneflow.__main__ import main

    raise SystemExit(main())
