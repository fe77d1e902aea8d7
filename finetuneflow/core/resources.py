"""Files shipped beside the package: `resources/` and `migrations/`.

In a checkout (or an editable install) they sit next to the `finetuneflow` package; in the
frozen app PyInstaller unpacks them under `sys._MEIPASS`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def app_root() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) if bundle else Path(__file__).resolve().parents[2]


def resource_path(*parts: str) -> Path:
    return app_root().joinpath("resources", *parts)
