"""`finetuneflow machine add|list|test|setup|remove`: the machines a run can go to over SSH."""

from __future__ import annotations

import argparse
import shlex
import sys

from finetuneflow.cli.common import add_json, print_json, subcommands
from finetuneflow.core.units import format_bytes
from finetuneflow.services.data_folder import Home
from finetuneflow.services.machines import (
    DEFAULT_VENV,
    HostKeyUnknown,
    MachineCheck,
    SetupOptions,
    TrainerMissing,
    add_machine,
    check_machine,
    gpu_names,
    list_machines,
    remove_machine,
    setup_machine,
)


def cmd_add(args: argparse.Namespace) -> int:
    machine = add_machine(Home.default(), args.name, args.url, key=args.key, python=args.python)
    if args.json:
        print_json(machine.to_json())
    else:
        print(f"Added {machine.name}: {machine.url}")
        print(f"Next: finetuneflow machine test {machine.name}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    machines = list_machines(Home.default())
    if args.json:
        print_json([machine.to_json() for machine in machines])
    for machine in [] if args.json else machines:
        key = f"key {machine.key}" if machine.key else "SSH agent"
        print(f"{machine.name}\t{machine.url}\t{key}\tpython {machine.python}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    machine = remove_machine(Home.default(), args.name)
    if args.json:
        print_json(machine.to_json())
    else:
        print(f"Removed {machine.name} ({machine.url})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    home = Home.default()
    interactive = not args.json and sys.stdin.isatty()
    try:
        try:
            check = check_machine(home, args.name, accept_host_key=args.accept_host_key)
        except HostKeyUnknown as unknown:
            if not interactive or not _asked_to_trust(unknown):
                raise
            check = check_machine(home, args.name, accept_host_key=unknown.fingerprint)
    except TrainerMissing as missing:
        if not interactive or not _asked_to_set_up(missing):
            raise
        check = setup_machine(home, args.name, on_line=_show_progress).check
    if args.json:
        print_json(check.to_json())
    else:
        print("\n".join(_describe(check)))
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    options = SetupOptions(venv=args.venv, python=args.python,
                           system_site_packages=args.system_site_packages,
                           pip_args=tuple(shlex.split(args.pip_args)))
    result = setup_machine(Home.default(), args.name, options, on_line=_show_progress)
    if args.json:
        print_json(result.to_json())
    else:
        print(f"Set up FineTuneFlow's trainer on {args.name} in {result.venv}")
        print("\n".join(_describe(result.check)))
    return 0


def _show_progress(line: str) -> None:
    """Each step and pip's output, on stderr: stdout stays the result (or the JSON)."""
    print(line, file=sys.stderr, flush=True)


def _asked_to_set_up(missing: TrainerMissing) -> bool:
    print(f"{missing.cause}.", file=sys.stderr)
    try:
        answer = input(f"Set up the trainer on {missing.machine.name} now, in {DEFAULT_VENV} "
                       "there? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _asked_to_trust(unknown: HostKeyUnknown) -> bool:
    machine = unknown.machine
    print(f"The host key of {machine.name} ({machine.host}:{machine.port}) is not known yet.\n"
          f"Its fingerprint is {unknown.fingerprint}: compare it with the one the machine's "
          "owner gives you.", file=sys.stderr)
    answer = input("Trust this host key? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _describe(check: MachineCheck) -> list[str]:
    probe = check.probe
    gpus = gpu_names(probe) or "none"
    return [f"{check.machine.name}: connected to {check.machine.url}",
            f"Python {check.python_version}, FineTuneFlow {check.finetuneflow_version} "
            f"(trainer protocol {check.protocol})",
            f"GPUs: {gpus}; CUDA {probe.cuda_version or 'none'}; torch {probe.torch_version}",
            f"CPU: {probe.cpu_model or 'unknown'} ({probe.cpu_cores} cores); RAM: "
            f"{format_bytes(probe.ram_total_bytes or 0)}"]


def register(commands: argparse._SubParsersAction) -> None:
    machine = commands.add_parser("machine", help="machines to train on over SSH")
    actions = subcommands(machine, "machine_command")
    add = actions.add_parser("add", help="add a machine reached over SSH")
    add.add_argument("name", help="a short name for it (letters, digits, '.', '_', '-')")
    add.add_argument("url", help="ssh://user@host or ssh://user@host:port")
    add.add_argument("--key", help="your private key's path (default: the SSH agent)")
    add.add_argument("--python", help="the python to run there (default: python3)")
    listing = actions.add_parser("list", help="list the machines")
    test = actions.add_parser("test", help="connect and check the trainer and hardware there")
    test.add_argument("name")
    test.add_argument("--accept-host-key", metavar="SHA256:…",
                      help="trust an unknown host key with this fingerprint")
    setup = actions.add_parser(
        "setup", help="install this version's trainer there, in a venv, and use its python")
    setup.add_argument("name")
    setup.add_argument("--venv", default=DEFAULT_VENV,
                       help=f"the venv's folder there (default: {DEFAULT_VENV})")
    setup.add_argument("--python", help="the python there to make the venv with (default: the "
                                        "machine's python)")
    setup.add_argument("--system-site-packages", action="store_true",
                       help="let the venv see that python's packages (a torch already there)")
    setup.add_argument("--pip-args", default="", metavar='"ARGS"',
                       help='options for pip install there, written as --pip-args="--no-deps"')
    remove = actions.add_parser("remove", help="forget a machine")
    remove.add_argument("name")
    for parser, handler in ((add, cmd_add), (listing, cmd_list), (test, cmd_test),
                            (setup, cmd_setup), (remove, cmd_remove)):
        add_json(parser)
        parser.set_defaults(handler=handler)
