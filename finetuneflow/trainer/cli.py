"""`finetuneflow trainer probe [--home PATH]`, `finetuneflow trainer run JOB.json`,
`finetuneflow trainer launch ACCELERATE_ARGS` (several processes: see trainer/launch.py),
`finetuneflow trainer export JOB.json`, `finetuneflow trainer chat JOB.json`,
`finetuneflow trainer answer JOB.json` (the evaluation's answers, in batches) and
`finetuneflow trainer speed JOB.json` (times a few steps: the training time estimate).

stdout carries protocol events only (one JSON object per line); logs go to stderr. Exit codes:
0 finished or stopped on request, 1 failed (an error event says why), 2 bad command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from finetuneflow.core.child_protocol import LAUNCH_COMMAND
from finetuneflow.core.training.config import TrainingConfig
from finetuneflow.trainer.channel import EventChannel, open_protocol_channel

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetuneflow trainer",
        description="The training process. Prints JSON events on stdout, logs on stderr.")
    commands = parser.add_subparsers(dest="command", required=True)
    probe = commands.add_parser("probe", help="print what this computer can train on")
    probe.add_argument("--home", type=Path, default=None,
                       help="report the free disk space of this folder")
    for name, text in (("run", "train the job described by a job file"),
                       ("export", "answer sample prompts before and after, merge the adapter"),
                       ("chat", "answer a chat token by token (base and fine-tuned)"),
                       ("answer", "answer evaluation questions in batches (base and "
                                  "fine-tuned)"),
                       ("speed", "time a few training steps of the job's model")):
        command = commands.add_parser(name, help=text)
        command.add_argument("job", type=Path, help="the job file (JSON)")
    return parser


def main(argv: list[str]) -> int:
    if argv[:1] == [LAUNCH_COMMAND]:  # before the protocol channel: the ranks share our stdout
        from finetuneflow.trainer.launch import launch

        return launch(argv[1:])
    args = build_parser().parse_args(argv)  # exits 2 with a usage message on bad input
    channel = open_protocol_channel()  # before the ML stack can print anything
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from finetuneflow.trainer.run import configure_logging

    configure_logging()
    if args.command == "probe":
        return _probe(args.home, channel)
    return _run(args.command, args.job, channel)


def _probe(home: Path | None, channel: EventChannel) -> int:
    from finetuneflow.core.child_protocol import ErrorEvent
    from finetuneflow.trainer.probe import probe

    try:
        channel.emit(probe(home))
    except Exception as error:
        log.exception("Probe failed")
        channel.emit(ErrorEvent(kind="internal", message=(
            f"Could not inspect this computer's hardware ({type(error).__name__}: {error}).")))
        return 1
    return 0


def _run(command: str, job: Path, channel: EventChannel) -> int:
    from finetuneflow.trainer.stop import StopSignal

    hide_bitsandbytes_unless_needed(command, job)
    stop = StopSignal()
    stop.listen()
    channel.on_lost = lambda: stop.request("the app reading the events is gone")
    if command == "export":
        from finetuneflow.trainer.export import run_export

        return run_export(job, channel, stop)
    if command == "speed":
        from finetuneflow.trainer.speed import run_speed

        return run_speed(job, channel, stop)
    if command == "chat":
        from finetuneflow.trainer.inference import run_chat

        return run_chat(job, channel, stop)
    if command == "answer":
        from finetuneflow.trainer.answers import run_answer

        return run_answer(job, channel, stop)
    from finetuneflow.trainer.run import run_job

    return run_job(job, channel, stop)


def hide_bitsandbytes_unless_needed(command: str, job: Path) -> None:
    """Importing peft imports bitsandbytes when it is installed (about 1.3 s of CPU at every
    start: it loads torch's compiler), yet only QLoRA training loads a model in 4 bits. For
    any other job peft and transformers are told it is absent: importlib's `find_spec`
    answers None for a module whose `sys.modules` entry is None."""
    if command in ("run", "speed") and _method_of(job) == "qlora":
        return
    sys.modules.setdefault("bitsandbytes", None)  # type: ignore[arg-type]


def _method_of(job: Path) -> str | None:
    try:
        config = json.loads(job.read_text(encoding="utf-8")).get("config") or {}
        return str(config.get("method", TrainingConfig.method))
    except (OSError, ValueError, AttributeError):
        return None  # the job's own reader says what is wrong with the file


def exit_process(code: int) -> NoReturn:
    """End the child now: everything is written and flushed, and tearing down the ML stack's
    modules at interpreter exit takes seconds the parent would spend waiting."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
