"""Guard against a Qt binding that corrupts Python's reference counts.

PySide6 6.12.0 under Python 3.11 drops a reference to None on every call that returns nothing;
the app then dies with "none_dealloc" after some seconds of events. Python 3.12+ makes None
immortal, which hides the bug, so the check only means something on 3.11.
"""

from __future__ import annotations

import sys

import pytest
from PySide6.QtWidgets import QApplication


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal on Python 3.12+")
def test_void_qt_calls_keep_none_alive(qapp: QApplication) -> None:
    before = sys.getrefcount(None)
    for _ in range(5000):
        qapp.processEvents()
    assert sys.getrefcount(None) > before - 1000
