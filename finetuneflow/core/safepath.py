"""Paths inside a project folder that can never point outside it.

File names come from users (dropped documents, project names), so every path the app builds
under the home folder goes through `safe_child`, which refuses traversal rather than "fixing" it.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

_FORBIDDEN_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


class UnsafePathError(ValueError):
    """A name or relative path that would escape its base folder or is not portable."""


def check_name(name: str) -> str:
    """Return `name` if it is one safe path component, else raise UnsafePathError."""
    if not name or name in {".", ".."}:
        raise UnsafePathError(f"{name!r} is not a valid file name")
    if "/" in name or "\\" in name:
        raise UnsafePathError(f"{name!r} must not contain a path separator")
    if _FORBIDDEN_CHARS.search(name):
        raise UnsafePathError(f"{name!r} contains control or reserved characters")
    if name.rstrip(" .") != name:
        raise UnsafePathError(f"{name!r} must not end with a dot or space")
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        raise UnsafePathError(f"{name!r} is a reserved device name on Windows")
    return name


def safe_child(base: Path, *parts: str) -> Path:
    """`base / parts…`, refusing absolute parts, `..`, separators and control characters."""
    target = base
    for part in parts:
        if PurePosixPath(part).is_absolute() or PureWindowsPath(part).is_absolute():
            raise UnsafePathError(f"{part!r} is an absolute path")
        target = target / check_name(part)
    resolved_base = base.resolve()
    resolved = target.resolve()
    # A symlink inside the project could still lead outside: check the resolved result too.
    if resolved != resolved_base and resolved_base not in resolved.parents:
        raise UnsafePathError(f"{target} lies outside {base}")
    return target


def slugify(text: str, *, max_length: int = 60, fallback: str = "file") -> str:
    """A portable, readable file-name stem made from arbitrary user text."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text).strip("-._")[:max_length].strip("-._")
    if not slug or slug.split(".")[0].upper() in _WINDOWS_RESERVED:
        return fallback
    return slug
