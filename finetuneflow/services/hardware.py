"""What this computer can train on: the trainer's probe, run in a child, cached on disk."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from finetuneflow.core.child_protocol import ErrorEvent, ProbeEvent, ProtocolError, decode
from finetuneflow.services.child_process import child_environment
from finetuneflow.services.errors import UserError
from finetuneflow.services.trainer_process import trainer_command

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

PROBE_TIMEOUT_S = 180
CACHE_MAX_AGE_S = 24 * 3600  # drivers and disks change rarely; free memory is re-read on demand


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

    def _run_probe(self) -> ProbeEvent:
        try:
            result = subprocess.run(
                trainer_command("probe", "--home", str(self._context.home.root)),
                capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                env=child_environment())
        except subprocess.TimeoutExpired:
            raise UserError("Inspecting the hardware took too long: try again, and check "
                            "that no other program is holding the GPU.") from None
        for line in reversed(result.stdout.splitlines()):
            try:
                event = decode(line)
            except ProtocolError:
                continue
            if isinstance(event, ProbeEvent):
                return event
            if isinstance(event, ErrorEvent):
                raise UserError(event.message)
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"The hardware check failed ({tail[0]}). See the log file.")
