"""`finetuneflow hardware` and `finetuneflow train`: the Hardware and Train steps."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from finetuneflow.cli.common import (
    EXIT_USER_ERROR,
    add_json,
    open_context,
    print_json,
    stderr_progress,
)
from finetuneflow.cli.status import print_next
from finetuneflow.core.child_protocol import (
    ErrorEvent,
    EvalEvent,
    Event,
    FinishedEvent,
    LogEvent,
    ProbeEvent,
    StatusEvent,
    StoppedEvent,
    encode,
)
from finetuneflow.core.progress import CancelToken
from finetuneflow.core.training.config import (
    METHOD_LABELS,
    PRESETS,
    TrainingConfig,
    describe_settings,
)
from finetuneflow.core.training.timing import EtaSmoother
from finetuneflow.core.units import format_duration
from finetuneflow.services.context import AppContext
from finetuneflow.services.errors import UserError
from finetuneflow.services.settings import AppSettings
from finetuneflow.services.training import (
    PreparedRun,
    QLoRAWithoutCuda,
    RunRecorder,
    TrainingService,
)


def cmd_hardware(args: argparse.Namespace) -> int:
    from finetuneflow.core.units import format_bytes
    from finetuneflow.services.hardware import HardwareService

    context = open_context()
    probe = HardwareService(context).probe(refresh=args.refresh)
    plan = _project_plan(context, args.project, probe, args.refresh) if args.project else None
    if args.json:
        print_json({**asdict(probe), **({"plan": plan} if plan is not None else {})})
        return 0
    for gpu in probe.gpus:
        bf16 = "yes" if gpu.get("bf16") else "no"
        print(f"GPU {gpu.get('index', 0)}: {gpu.get('name')} · "
              f"{format_bytes(gpu['free_bytes'])} free of {format_bytes(gpu['total_bytes'])} · "
              f"bf16 {bf16}")
    if not probe.gpus:
        print("GPU: none (CUDA not available)" + (" · Apple MPS available" if probe.mps else ""))
    print(f"CPU: {probe.cpu_model} · {probe.cpu_cores} cores")
    if probe.ram_total_bytes:
        print(f"RAM: {format_bytes(probe.ram_free_bytes or 0)} free of "
              f"{format_bytes(probe.ram_total_bytes)}")
    if probe.disk_free_bytes is not None:
        print(f"Disk: {format_bytes(probe.disk_free_bytes)} free in {probe.disk_path}")
    if plan is not None:
        _print_plan(plan)
    return 0


def _project_plan(context: AppContext, project: str, probe: ProbeEvent,
                  refresh: bool) -> dict[str, Any]:
    """The recommendation for the project's model and data on this computer, and the time a
    run takes here (timed in the trainer child: a few seconds to a minute the first time)."""
    service = TrainingService(context)
    plan = service.plan(project, service.config_for(project), probe)
    rec = plan.recommendation
    print("Timing a few training steps of the model on this computer…", file=sys.stderr)
    measured = service.estimate_time(project, plan.config, refresh=refresh,
                                     processes=max(1, len(probe.gpus)))
    if measured is not None:
        estimate = {**asdict(measured), "measured": True}
    else:
        estimate = {"seconds": rec.estimated_seconds, "measured": False}
    return {"method": rec.method, "device": rec.device, "fits": rec.fits, "reason": rec.reason,
            "per_device_batch_size": rec.per_device_batch_size,
            "gradient_accumulation_steps": rec.gradient_accumulation_steps,
            "max_seq_length": rec.max_seq_length,
            "activation_checkpointing": rec.activation_checkpointing,
            "memory_bytes": rec.estimate.total, "memory": rec.estimate.summary(),
            "budget_bytes": rec.budget_bytes, "examples": plan.examples,
            "train_examples": plan.train_examples, "eval_examples": plan.eval_examples,
            "warnings": plan.warnings, "estimate": estimate,
            "summary": measured.summary() if measured is not None else None}


def _print_plan(plan: dict[str, Any]) -> None:
    print(f"Recommendation: {METHOD_LABELS[plan['method']]} on {plan['device'].upper()} — "
          f"{plan['reason']}")
    print(f"Examples: {plan['train_examples']} to train on, {plan['eval_examples']} held out "
          "for evaluation")
    if plan["summary"] is not None:
        print(f"Expected time: {plan['summary']}")
    else:
        print(f"Expected time: roughly {format_duration(plan['estimate']['seconds'])} (a guess "
              "from the model's size: the weights are not downloaded yet, so nothing was timed)")
    for warning in plan["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)


def _describe(event: Event, eta: EtaSmoother | None = None) -> str | None:
    if isinstance(event, StatusEvent):
        return event.message
    if isinstance(event, LogEvent):
        parts = [f"step {event.step}/{event.total_steps}"]
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4f}")
        # Smoothed over recent steps: one slow step does not make the ETA jump.
        smoothed = eta.update(event.step, event.elapsed_s, event.total_steps) if eta else None
        remaining = smoothed if smoothed is not None else event.eta_s
        if remaining is not None:
            parts.append(f"ETA {format_duration(remaining)}")
        return " · ".join(parts)
    if isinstance(event, EvalEvent) and event.eval_loss is not None:
        return f"eval loss {event.eval_loss:.4f} at step {event.step}"
    return None


def _final_json(event: Event | None, run_id: int,
                settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The last --json line: how the run ended (finished, stopped, error or interrupted), and
    the settings it trained with."""
    extra = {"settings": settings} if settings is not None else {}
    if event is None:
        return {"type": "result", "run_id": run_id, "status": "interrupted", **extra}
    return {"type": "result", "run_id": run_id, "status": event.TYPE, **asdict(event), **extra}


def cmd_train(args: argparse.Namespace) -> int:
    context = open_context()
    service = TrainingService(context)
    where = _where(context, args)  # a wrong machine fails before anything runs
    if args.attach:
        if args.on is None:
            raise UserError("--attach follows a run on another machine: add --on NAME.")
        from finetuneflow.services.remote_training import RemoteTraining

        # Checked before a job exists: a refused attach leaves the run as it was.
        RemoteTraining(context).attach(service.latest_prepared(args.project), args.on)
        prepared = service.prepare_attach(args.project)
    elif args.resume:
        prepared = service.prepare_resume(args.project)
    else:
        from finetuneflow.services.status import check_can_train

        check_can_train(context, args.project)  # model, then data, before the settings
        config = service.config_for(args.project, args.preset, args.method, args.max_steps)
        prepared = _prepare(service, args.project, config)
    final = _run_once(context, prepared, args.json, where)
    smaller = service.suggested_config(args.project)
    if smaller is not None and AppSettings.load(context.home).retry_smaller_on_oom:
        print("Out of memory: retrying once with smaller settings.", file=sys.stderr)
        prepared = _prepare(service, args.project, smaller)
        final = _run_once(context, prepared, args.json, replace(where, attach=False))
    code = _report(final, prepared, args.json, _remote_ending(context, prepared, where))
    if isinstance(final, FinishedEvent) and not args.json:
        print_next(args.project)
    return code


def _prepare(service: TrainingService, project: str, config: TrainingConfig) -> PreparedRun:
    try:
        return service.prepare(project, config, progress=stderr_progress)
    except QLoRAWithoutCuda as error:
        raise UserError(f"{error} Train with --method lora, or on a computer with one.") from None


@dataclass(frozen=True)
class Where:
    """Where a run trains: here, or on a machine (`--on`), newly started or reattached, or on
    several machines at once (`--on A,B`: `nodes`, with `processes` on each)."""

    project: str
    machine: str | None = None
    processes: int = 1
    attach: bool = False
    nodes: tuple[str, ...] = ()
    main_address: str | None = None  # with nodes: where the others reach the first


def _where(context: AppContext, args: argparse.Namespace) -> Where:
    """Where `train` runs, from --on, --processes and --processes-per-machine, checked."""
    per_machine = args.processes_per_machine
    if per_machine is not None and per_machine < 1:
        raise UserError("--processes-per-machine must be 1 or more.")
    if args.main_address is not None and (args.on is None or "," not in args.on):
        raise UserError("--main-address goes with --on A,B: it is where the other machines "
                        "reach the first one.")
    if args.on is None:
        if per_machine is not None:
            raise UserError("--processes-per-machine goes with --on A,B (the machines to train "
                            "on); here, use --processes N.")
        return Where(args.project, None, args.processes or 1, args.attach)
    names = [name.strip() for name in args.on.split(",")]
    if len(names) == 1:
        from finetuneflow.services.remote_training import RemoteTraining

        if per_machine is not None and args.processes not in (None, per_machine):
            raise UserError("Give the processes once: --processes N, or "
                            "--processes-per-machine N.")
        RemoteTraining(context).machine(names[0])
        return Where(args.project, names[0], per_machine or args.processes or 1, args.attach)
    from finetuneflow.services.remote_nodes import MultiNodeTraining, check_main_address

    check_main_address(args.main_address)
    if args.processes is not None:
        raise UserError("--processes counts the processes of one machine: with several, use "
                        "--processes-per-machine N.")
    if args.attach:
        raise UserError("--attach follows a run on one machine; a run over several machines "
                        "is stopped when this command ends: resume it with --resume --on "
                        f"{args.on}.")
    MultiNodeTraining(context).machines(names)
    return Where(args.project, ",".join(names), per_machine or 1, nodes=tuple(names),
                 main_address=args.main_address)


def _run_once(context: AppContext, prepared: PreparedRun, as_json: bool,
              where: Where) -> Event | None:
    """Run the trainer child to its end; Ctrl-C asks it to stop after the current step."""
    recorder = RunRecorder(context, prepared)
    recorder.begin()  # refused while another job trains this project
    cancel = CancelToken()
    eta = EtaSmoother()

    def on_line(line: str) -> None:
        event = recorder.handle_line(line)
        if event is None:
            return
        if as_json:
            print(encode(event), flush=True)
        elif (text := _describe(event, eta)) is not None:
            print(text, file=sys.stderr, flush=True)

    def stop(_signum: int, _frame: object) -> None:
        print("Stopping after the current step (a checkpoint is saved)…", file=sys.stderr)
        cancel.cancel()

    previous = signal.signal(signal.SIGINT, stop)  # Ctrl-C: a graceful stop, not a traceback
    print(f"Run {prepared.run_id}: log in {prepared.log_path}", file=sys.stderr)
    if not as_json:
        print("Settings: " + describe_settings(TrainingConfig.from_dict(prepared.job.config)),
              file=sys.stderr)
    for warning in prepared.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        if where.machine is None:
            _train_here(recorder, prepared, on_line, cancel, where.processes)
        elif where.nodes[1:]:
            _train_on_nodes(context, recorder, prepared, on_line, cancel, where)
        else:
            _train_there(context, recorder, prepared, on_line, cancel, where)
    finally:
        signal.signal(signal.SIGINT, previous)
    return recorder.final


def _train_here(recorder: RunRecorder, prepared: PreparedRun, on_line: Callable[[str], None],
                cancel: CancelToken, processes: int) -> None:
    from finetuneflow.services.trainer_process import run_trainer

    code = run_trainer(["run", str(prepared.job_path)], prepared.log_path, on_line, cancel,
                       processes=processes)
    recorder.process_ended(code)


def _train_there(context: AppContext, recorder: RunRecorder, prepared: PreparedRun,
                 on_line: Callable[[str], None], cancel: CancelToken, where: Where) -> None:
    """Upload and start (or reattach), then follow; the run goes on there if this ends."""
    from finetuneflow.services.remote_training import RemoteTraining, follow_remote

    assert where.machine is not None
    service = RemoteTraining(context)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    run = service.begin(recorder, prepared, where.machine, where.processes, where.attach, say)
    print(f"Training on {where.machine}; if this command ends, the run goes on there "
          f"(reattach with --on {where.machine} --attach).", file=sys.stderr)
    follow_remote(run, recorder, where.project, on_line, cancel, notice=say)


def _train_on_nodes(context: AppContext, recorder: RunRecorder, prepared: PreparedRun,
                    on_line: Callable[[str], None], cancel: CancelToken, where: Where) -> None:
    """Upload to every machine, start them all, follow rank 0; a node that dies ends them."""
    from finetuneflow.services.remote_nodes import MultiNodeTraining, follow_nodes

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        run = MultiNodeTraining(context).start(prepared, list(where.nodes), where.processes,
                                               progress=say, main_address=where.main_address)
    except UserError as error:
        recorder.process_ended(None, str(error), failed=True)
        raise
    print(f"Training on {', '.join(where.nodes)} ({where.processes} process"
          f"{'es' if where.processes > 1 else ''} each; {where.nodes[0]} reports). Ctrl-C "
          "stops every machine after the current step.", file=sys.stderr)
    follow_nodes(run, recorder, where.project, on_line, cancel, notice=say)


def _remote_ending(context: AppContext, prepared: PreparedRun, where: Where) -> str | None:
    """Why a run there ended without a final event (its job says: died, or out of reach)."""
    if where.machine is None:
        return None
    from finetuneflow.services.jobs import JobService

    job = JobService(context).get(prepared.job_id)
    return job.error or job.message


def _report(final: Event | None, prepared: PreparedRun, as_json: bool,
            ending: str | None = None) -> int:
    if as_json:
        print_json(_final_json(final, prepared.run_id, prepared.job.config))
    if isinstance(final, FinishedEvent):
        if not as_json:
            print(final.adapter_dir)
            print(f"eval loss {final.final_eval_loss} · perplexity {final.perplexity} · "
                  f"{format_duration(final.runtime_s)}", file=sys.stderr)
        return 0
    if isinstance(final, StoppedEvent):
        print(f"Stopped at step {final.step}. Resume with: finetuneflow train PROJECT --resume",
              file=sys.stderr)
        return 0
    message = final.message if isinstance(final, ErrorEvent) else \
        ending or "The training process ended unexpectedly; resume with --resume."
    print(f"finetuneflow: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def register(commands: argparse._SubParsersAction) -> None:
    hardware = commands.add_parser("hardware", help="what this computer can train on")
    hardware.add_argument("--refresh", action="store_true", help="probe again, ignore the cache")
    hardware.add_argument("--project", metavar="PROJECT",
                          help="also recommend settings for this project and time a few "
                               "training steps to estimate how long its run takes here")
    add_json(hardware)
    hardware.set_defaults(handler=cmd_hardware)

    train = commands.add_parser("train", help="fine-tune the project's base model")
    train.add_argument("project")
    train.add_argument("--preset", choices=list(PRESETS), help="training settings preset")
    train.add_argument("--method", choices=["lora", "qlora"])
    train.add_argument("--max-steps", type=int, metavar="N")
    train.add_argument("--processes", type=int, metavar="N",
                       help="train with N processes under accelerate launch (one per GPU)")
    train.add_argument("--processes-per-machine", type=int, metavar="N",
                       help="with --on A,B: N processes on each machine (one per GPU)")
    train.add_argument("--resume", action="store_true",
                       help="continue the last stopped or interrupted run")
    train.add_argument("--on", metavar="NAME[,NAME...]",
                       help="train on this machine over SSH (see `finetuneflow machine`); "
                            "checkpoints and the adapter are copied back here. Several "
                            "names, comma-separated, train on all of them at once (the "
                            "first one reports)")
    train.add_argument("--attach", action="store_true",
                       help="with --on: follow the latest run there again, after a lost "
                            "connection, from where this computer stopped reading")
    train.add_argument("--main-address", metavar="HOST",
                       help="with --on A,B: the address at which the other machines reach the "
                            "first one (default: its SSH host; give its address on the network "
                            "the machines share when that differs)")
    add_json(train)
    train.set_defaults(handler=cmd_train)
