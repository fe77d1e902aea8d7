"""`python -m finetuneflow.trainer probe|run JOB.json`."""

from __future__ import annotations

import sys

from finetuneflow.trainer.cli import exit_process, main

if __name__ == "__main__":
    exit_process(main(sys.argv[1:]))
