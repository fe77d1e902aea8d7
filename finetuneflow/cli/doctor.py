"""`finetuneflow doctor`: the database's health, project folders it does not list, files added
only half way. Exit 0 when nothing is wrong, 1 when something is."""

from __future__ import annotations

import argparse

from finetuneflow.cli.common import EXIT_USER_ERROR, add_json, print_json
from finetuneflow.services.data_folder import Home
from finetuneflow.services.doctor import describe, examine


def cmd_doctor(args: argparse.Namespace) -> int:
    report = examine(Home.default().ensure())
    if args.json:
        print_json(report.to_json())
    else:
        print("\n".join(describe(report)))
    return 0 if not report.problems else EXIT_USER_ERROR


def register(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check the database and the project folders (exit 1 if a problem)")
    add_json(doctor)
    doctor.set_defaults(handler=cmd_doctor)
