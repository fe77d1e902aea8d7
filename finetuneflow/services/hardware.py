"""What this computer can train on (the trainer's probe) and how fast it trains a model at given
settings (the trainer's speed probe): both run in a child and are cached on disk."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuneflow.core.child_protocol import (
    ErrorEvent,
    ProbeEvent,
    ProtocolError,
    SpeedEvent,
    SpeedJob,
    decode,
    probe_outcome,
)
from finetuneflow.core.progress import CancelToken
from finetuneflow.core.training.config import TrainingConfig
from finetuneflow.core.training.timing import MeasuredSpeed
from finetuneflow.services.child_process import child_environment
from finetuneflow.services.errors import UserError
from finetuneflow.services.trainer_process import run_trainer, trainer_command

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

PROBE_TIMEOUT_S = 180
CACHE_MAX_AGE_S = 24 * 3600  # drivers and disks change rarely; free memory is re-read on demand
SPEED_WARMUP_STEPS = 2  # the first steps allocate and warm caches: not timed
SPEED_TIMED_STEPS = 3
# The settings that change the time of a step (the rest change how many steps there are).
SPEED_SETTINGS = ("method", "per_device_batch_size", "gradient_accumulation_steps",
                  "max_seq_length", "activation_checkpointing", "packing", "lora_r",
                  "lora_dropout", "target_modules", "assistant_only_loss")


class HardwareService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._cache = context.home.root / "hardware.json"

    def probe(self, refresh: bool = False) -> ProbeEvent:
        if not refresh:
            cached = self.cached()
            if cached is not None:
                return cached
        probe = self._run_probe()
        self._cache.write_text(json.dumps({"time": time.time(), "probe": asdict(probe)}),
                               encoding="utf-8")
        return probe

    def cached(self) -> ProbeEvent | None:
        """The last probe if it is recent, without starting a child (for the GUI thread)."""
        try:
            data = json.loads(self._cache.read_text(encoding="utf-8"))
            if time.time() - float(data["time"]) > CACHE_MAX_AGE_S:
                return None
            return ProbeEvent(**data["probe"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def gpu_count(self) -> int:
        probe = self.cached()
        return len(probe.gpus) if probe is not None else 0

    # --- speed ----------------------------------------------------------------------------------

    def cached_speed(self, model_dir: Path, config: TrainingConfig) -> MeasuredSpeed | None:
        """The speed measured earlier for this model and these settings, if any."""
        entry = self._speed_cache().get(speed_key(model_dir, config))
        if not isinstance(entry, dict):
            return None
        try:
            return MeasuredSpeed(**entry)
        except TypeError:
            return None

    def measure_speed(self, model_dir: Path, config: TrainingConfig,
                      chats: list[list[dict[str, str]]], *, refresh: bool = False,
                      cancel: CancelToken | None = None) -> MeasuredSpeed:
        """Time a few training steps of the model at `config` on a sample of `chats`, in the
        trainer child (cached per model and settings: `refresh` measures again)."""
        if not refresh and (cached := self.cached_speed(model_dir, config)) is not None:
            return cached
        if not chats:
            raise UserError("There are no examples to time a training step on: generate or "
                            "import some first.")
        with tempfile.TemporaryDirectory(prefix="speed-", dir=self._work_root()) as folder:
            event = self._run_speed(Path(folder), model_dir, config, chats, cancel)
        speed = MeasuredSpeed(step_s=event.step_s, startup_s=event.startup_s,
                              device=event.device, steps_timed=event.steps_timed,
                              measured_at=time.time())
        cache = self._speed_cache()
        cache[speed_key(model_dir, config)] = asdict(speed)
        self._speed_path.write_text(json.dumps(cache, indent=1), encoding="utf-8")
        return speed

    @property
    def _speed_path(self) -> Path:
        return self._context.home.root / "speed.json"

    def _speed_cache(self) -> dict[str, Any]:
        try:
            data = json.loads(self._speed_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _work_root(self) -> Path:
        root = self._context.home.root / "tmp"
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _run_speed(self, folder: Path, model_dir: Path, config: TrainingConfig,
                   chats: list[list[dict[str, str]]], cancel: CancelToken | None) -> SpeedEvent:
        sample = timing_sample(chats, config.effective_batch_size
                               * (SPEED_WARMUP_STEPS + SPEED_TIMED_STEPS))
        train_path = folder / "sample.jsonl"
        train_path.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in sample),
                              encoding="utf-8")
        job = SpeedJob(model_path=str(model_dir), train_path=str(train_path),
                       work_dir=str(folder / "work"), config=config.to_dict(),
                       warmup_steps=SPEED_WARMUP_STEPS, timed_steps=SPEED_TIMED_STEPS,
                       spawned_at=time.time())
        job_path = job.write(folder / "job.json")
        found: list[SpeedEvent | ErrorEvent] = []

        def on_line(line: str) -> None:
            try:
                event = decode(line)
            except ProtocolError:
                return
            if isinstance(event, SpeedEvent | ErrorEvent):
                found.append(event)

        log_path = self._context.home.logs_dir / "speed.log"
        # Nothing to save: a cancelled timing ends at once, its memory given back.
        run_trainer(["speed", str(job_path)], log_path, on_line, cancel, grace_seconds=0)
        shutil.rmtree(folder / "work", ignore_errors=True)
        for event in found:
            if isinstance(event, SpeedEvent):
                return event
            raise UserError(f"Timing a training step failed: {event.message}")
        if cancel is not None and cancel.cancelled:
            raise UserError("Timing a training step was cancelled.")
        raise UserError(f"Timing a training step failed: see {log_path}.")

    def _run_probe(self) -> ProbeEvent:
        try:
            result = subprocess.run(
                trainer_command("probe", "--home", str(self._context.home.root)),
                capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                env=child_environment())
        except subprocess.TimeoutExpired:
            raise UserError("Inspecting the hardware took too long: try again, and check "
                            "that no other program is holding the GPU.") from None
        outcome = probe_outcome(result.stdout)
        if isinstance(outcome, ProbeEvent):
            return outcome
        if isinstance(outcome, ErrorEvent):
            raise UserError(outcome.message)
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"The hardware check failed ({tail[0]}). See the log file.")


def speed_key(model_dir: Path, config: TrainingConfig) -> str:
    """The model (its folder and config.json) and the settings that decide a step's time."""
    try:
        model_config = (model_dir / "config.json").read_bytes()
    except OSError:
        model_config = b""
    settings = {name: getattr(config, name) for name in SPEED_SETTINGS}
    digest = hashlib.sha256(model_config + json.dumps(settings, sort_keys=True).encode())
    return f"{model_dir.resolve()}|{digest.hexdigest()[:16]}"


def timing_sample(chats: list[list[dict[str, str]]], count: int) -> list[list[dict[str, str]]]:
    """`count` examples drawn at random (always the same draw) so batches pad as a real run's
    do; repeated when there are fewer."""
    rng = random.Random(0)
    if len(chats) >= count:
        return rng.sample(chats, count)
    return [chats[index % len(chats)] for index in range(count)]
