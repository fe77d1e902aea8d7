"""Sizes and durations as people read them: shared by every page, the CLI and the report."""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3


def format_bytes(size: float) -> str:
    """'1.4 GB', '512 MB', '538 KB', '12 bytes': never '0 MB' for something small."""
    if size >= GIB:
        return f"{size / GIB:.1f} GB"
    if size >= MIB:
        return f"{size / MIB:.0f} MB"
    if size >= KIB:
        return f"{size / KIB:.0f} KB"
    return f"{max(0, round(size))} bytes"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes:02d} min"
    return f"{seconds / 86400:.1f} days"
