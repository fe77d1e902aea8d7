"""What this computer can train on: GPUs and their free memory, RAM, CPU, free disk.

RAM comes from /proc/meminfo, sysconf or the Windows API (psutil is not a dependency).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from finetuneflow.core.child_protocol import ProbeEvent


def probe(home: Path | None = None) -> ProbeEvent:
    import torch

    total_ram, free_ram = ram_bytes()
    disk_path = _existing_parent(home) if home else None
    return ProbeEvent(
        gpus=cuda_devices(),
        mps=bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        cpu_model=cpu_model(),
        cpu_cores=usable_cores(),
        ram_total_bytes=total_ram,
        ram_free_bytes=free_ram,
        disk_path=str(home) if home else None,
        disk_free_bytes=shutil.disk_usage(disk_path).free if disk_path else None,
        torch_version=torch.__version__,
        cuda_version=torch.version.cuda,
        bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
        platform=f"{platform.system()} {platform.release()} ({platform.machine()})",
    )


def cuda_devices() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        devices.append({
            "index": index,
            "name": properties.name,
            "total_bytes": int(total),
            "free_bytes": int(free),
            "compute_capability": f"{properties.major}.{properties.minor}",
            "bf16": properties.major >= 8,  # Ampere and newer compute in bf16 natively
        })
    return devices


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_bytes() -> tuple[int | None, int | None]:
    """(total, available) physical memory in bytes; None where the OS does not say."""
    meminfo = _read_meminfo()
    if meminfo:
        return meminfo.get("MemTotal"), meminfo.get("MemAvailable", meminfo.get("MemFree"))
    if sys.platform == "win32":
        return _windows_memory()
    return _sysconf_memory()


def _read_meminfo() -> dict[str, int]:
    try:
        text = Path("/proc/meminfo").read_text(encoding="ascii")
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def _sysconf_memory() -> tuple[int | None, int | None]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = page * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None, None
    try:
        free = page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        free = None  # macOS has no SC_AVPHYS_PAGES
    return total, free


def _windows_memory() -> tuple[int | None, int | None]:
    class MemoryStatus(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong),
                    ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong),
                    ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None, None
    return int(status.ullTotalPhys), int(status.ullAvailPhys)


def _existing_parent(path: Path) -> Path:
    """The folder itself, or its nearest existing parent (the home may not exist yet)."""
    current = path.resolve()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current
