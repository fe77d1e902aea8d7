"""Start the Qt application: the window, an optional project and page, or a screenshot.

The start has two steps so the window appears at once: its frame, which needs Qt alone, is
shown first; then the database is opened (SQLAlchemy, migrations) and the dashboard fills it.
The first step imports and touches only what its frame shows: the first use of each PySide6
class builds its Python enums (a few ms each), so the rest waits for the second step.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from PySide6.QtCore import QEventLoop, QThreadPool, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QWidget

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.services.data_folder import Home
from finetuneflow.services.errors import UserError

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

log = logging.getLogger(__name__)
SHUTDOWN_WAIT_MS = 30_000
EXPOSE_WAIT_S = 1.0  # as QSplashScreen waits for its window
EXIT_START_FAILED = 1


def make_application(argv: list[str] | None = None) -> QApplication:
    """The application as the first frame needs it; `finish_application` adds the rest."""
    app = QApplication.instance()
    if app is None:
        # Fusion follows the system's light/dark scheme on every platform. Given as Qt's own
        # option, not with setStyle(), which hands Python the style object: PySide6 then
        # builds its enums, ~10 ms of the first frame.
        app = QApplication([*(argv or sys.argv[:1]), "-style", "Fusion"])
    else:
        app.setStyle("Fusion")
    app.setApplicationName("FineTuneFlow")
    app.setOrganizationName("FineTuneFlow")
    return app  # type: ignore[return-value]


def finish_application() -> None:
    """What the first frame does without: the window icon, and the watcher that colours the app
    again when the system switches between light and dark."""
    from PySide6.QtGui import QIcon

    from finetuneflow.core.resources import resource_path
    from finetuneflow.gui.colours import theme_watcher

    QApplication.instance().setWindowIcon(  # type: ignore[union-attr]
        QIcon(str(resource_path("icons", "finetuneflow-256.png"))))
    theme_watcher()


def save_screenshot(widget: QWidget, path: Path) -> None:
    """Render the widget once its background tasks and pending events are done; save as PNG."""
    QApplication.processEvents()
    QThreadPool.globalInstance().waitForDone(SHUTDOWN_WAIT_MS)
    for _ in range(3):
        QApplication.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not widget.grab().save(str(path), "PNG"):
        raise UserError(f"Could not write the screenshot to {path}.")


def install_bug_dialog(context: AppContext) -> None:
    """Uncaught exceptions are bugs: log them and point the person at the log file."""

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        log.error("Unexpected error\n%s", "".join(traceback.format_exception(kind, error, tb)))
        if QGuiApplication.platformName() == "offscreen":
            sys.__excepthook__(kind, error, tb)
            return
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.critical(None, "Something went wrong",
                             f"FineTuneFlow hit an unexpected error: {error}\n\n"
                             f"Details are in the log file:\n{context.log_file}")

    sys.excepthook = hook


def show_window(home: Home, project: str | None = None, page: str | None = None) -> MainWindow:
    """The main window's frame, on screen and painted: the projects list (or the dashboard's
    heading and a note), or the wizard's frame at the project's step."""
    window = MainWindow(home=home, project=project, page=page)
    window.show()
    wait_until_exposed(window)
    return window


def wait_until_exposed(window: QWidget) -> None:
    """Qt paints a window when the window system exposes it, a few event-loop turns after
    show(): let that happen before the slow part of the start blocks the loop. Bounded, for a
    window that is never exposed (started minimised)."""
    handle = window.windowHandle()
    deadline = time.monotonic() + EXPOSE_WAIT_S
    while True:
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        if handle is None or handle.isExposed() or time.monotonic() > deadline:
            return
        time.sleep(0.005)


def fill_window(window: MainWindow, home: Home) -> AppContext | None:
    """Open the data folder (database, migrations, orphaned jobs) and fill the window.

    A failure is shown in a dialog (None), or, offscreen where no one sees one, raised for the
    command line to report."""
    finish_application()
    try:
        from finetuneflow.services.context import AppContext

        context = AppContext.open(home)
        install_bug_dialog(context)
        window.attach(context)
    except Exception as error:
        if QGuiApplication.platformName() == "offscreen":
            raise
        from finetuneflow.gui.errors import show_error
        from finetuneflow.services.logs import LOG_FILE_NAME

        if not isinstance(error, UserError):
            log.exception("could not open the data folder %s", home.root)
        show_error(window, "FineTuneFlow could not start", error, home.logs_dir / LOG_FILE_NAME)
        return None
    return context


def run_gui(project: str | None = None, page: str | None = None,
            screenshot: Path | None = None) -> int:
    if page and not project:
        raise UserError("--page needs --project: a page belongs to a project.")
    app = make_application()
    home = Home.default()
    window = show_window(home, project, page)
    if fill_window(window, home) is None:
        return EXIT_START_FAILED
    if project:
        window.open_project(project, page)
    if screenshot is not None:
        save_screenshot(window, screenshot)
        print(screenshot)
        code = 0
    else:
        QTimer.singleShot(0, lambda: log.info("window shown"))
        code = app.exec()
    # Background tasks must end before Qt tears down: a live pool thread aborts the process.
    QThreadPool.globalInstance().waitForDone(SHUTDOWN_WAIT_MS)
    return code
