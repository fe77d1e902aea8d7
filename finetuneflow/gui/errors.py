"""How the GUI shows failures: user errors say what to do; bugs point at the log file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from finetuneflow.core.write_errors import write_problem
from finetuneflow.services.errors import UserError


def describe(error: BaseException, log_file: Path) -> tuple[str, bool]:
    """(text to show, is it a bug?)"""
    if isinstance(error, UserError):
        return str(error), False
    if problem := write_problem(error, log_file.parent.parent):  # the data folder
        return problem, False
    return (f"Something went wrong: {error}\n\nThe details are in the log file:\n{log_file}",
            True)


def show_error(parent: QWidget, title: str, error: BaseException, log_file: Path) -> None:
    text, is_bug = describe(error, log_file)
    if is_bug:
        QMessageBox.critical(parent, title, text)
    else:
        QMessageBox.warning(parent, title, text)
