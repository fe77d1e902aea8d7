"""Colours follow the theme: the darker tone on light windows, the lighter on dark, and again
after the system switches between light and dark while the app runs.

Offscreen there is no system scheme to switch (styleHints().setColorScheme() changes nothing
there), so a switch is made the way a platform's theme change reaches the app: a new
application palette, which Qt announces with ApplicationPaletteChange.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyqtgraph as pg
import pytest
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QWidget
from pytestqt.qtbot import QtBot

from finetuneflow.core.steps import step_index
from finetuneflow.gui.app import finish_application, make_application
from finetuneflow.gui.colours import (
    TONE_PROPERTY,
    TONES,
    ThemeWatcher,
    set_tone,
    theme_watcher,
    tone,
)
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.hardware_page import HardwarePage
from finetuneflow.gui.pages.preview_page import PreviewPage
from finetuneflow.gui.pages.review_page import ReviewPage
from finetuneflow.gui.pages.train_page import TrainPage
from finetuneflow.gui.widgets.length_histogram import LengthHistogram
from finetuneflow.gui.widgets.loss_chart import LossChart
from finetuneflow.services.context import AppContext
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.review import PreviewGroup
from tests.helpers.fake_llm import FakeLLMServer
from tests.helpers.gui_projects import project_with_examples

LIGHT, DARK = 0, 1  # the side of a TONES pair
Switch = Callable[[QPalette], None]


def dark_palette() -> QPalette:
    """A dark palette as a platform gives one in dark mode: from a dark window colour Qt
    derives the other roles (white text, a black base)."""
    return QPalette(QColor("#323232"))


@pytest.fixture
def switch_to(qapp: QApplication) -> Iterator[Switch]:
    """Replace the application palette as a platform does on a switch, and let the widgets'
    palette events (posted) arrive. The session's palette comes back afterwards."""
    original = QPalette(qapp.palette())

    def switch(palette: QPalette) -> None:
        qapp.setPalette(palette)
        QApplication.processEvents()

    assert original.window().color().lightness() >= 128  # tests start on a light palette
    yield switch
    switch(original)


def text_colour(widget: QWidget) -> str:
    widget.ensurePolished()  # a style sheet takes effect when the widget is polished
    return widget.palette().color(widget.foregroundRole()).name()


def test_tones_follow_the_palette(switch_to: Switch) -> None:
    light = QApplication.palette()
    for palette, side in ((light, LIGHT), (dark_palette(), DARK)):
        switch_to(palette)
        assert [tone(name) for name in TONES] == [pair[side] for pair in TONES.values()]


def test_a_label_keeps_its_current_tone_across_switches(qtbot: QtBot, switch_to: Switch) -> None:
    label = QLabel("Connected")
    qtbot.addWidget(label)
    light = QApplication.palette()
    set_tone(label, "ok")
    assert text_colour(label) == TONES["ok"][LIGHT]
    switch_to(dark_palette())
    assert text_colour(label) == TONES["ok"][DARK]
    set_tone(label, "error")  # the state changed: the new tone is the one kept
    assert text_colour(label) == TONES["error"][DARK]
    switch_to(light)
    assert text_colour(label) == TONES["error"][LIGHT]
    set_tone(label, None)
    switch_to(dark_palette())
    assert label.styleSheet() == "" and text_colour(label) == "#ffffff"


def test_one_watcher_per_application(qapp: QApplication) -> None:
    assert theme_watcher() is theme_watcher()
    assert len(qapp.findChildren(ThemeWatcher)) == 1


@pytest.fixture
def app_look(qapp: QApplication) -> Iterator[None]:
    """The app's style and style sheet, as `make_application` and `finish_application` set them;
    the session's come back afterwards."""
    style, sheet, icon = qapp.style().name(), qapp.styleSheet(), qapp.windowIcon()
    assert make_application() is qapp
    finish_application()
    yield
    qapp.setWindowIcon(icon)
    qapp.setStyleSheet(sheet)
    qapp.setStyle(style)


@pytest.fixture
def project_id(window: MainWindow, context: AppContext, tiny_model_dir: Path,
               tmp_path: Path) -> str:
    project_id = project_with_examples(window, context, tiny_model_dir, tmp_path, "Theme", 20)
    ProjectService(context).set_note(project_id, "Next: check the examples.")
    return project_id


def chart_colours(chart: LossChart) -> tuple[str, str, str, str]:
    return (chart.train_curve.opts["pen"].color().name(),
            chart.eval_curve.opts["pen"].color().name(),
            chart.plot.getAxis("left").textPen().color().name(),
            chart.plot.getPlotItem().legend.labelTextColor().name())


def histogram_colours(histogram: LengthHistogram) -> tuple[str, str, str]:
    assert histogram.bars is not None
    return (pg.mkBrush(histogram.bars.opts["brush"]).color().name(),
            histogram.limit.pen.color().name(),
            histogram.plot.getAxis("bottom").textPen().color().name())


def note_background(page: QWidget) -> str:
    note = page.findChild(QLabel, "projectNote")
    return note.grab().toImage().pixelColor(4, note.height() // 2).name()


def toned_widgets(window: MainWindow) -> list[QWidget]:
    return [w for w in window.findChildren(QWidget) if w.property(TONE_PROPERTY)]


def check_theme(window: MainWindow, side: int, palette: QPalette) -> None:
    text = palette.windowText().color().name()
    toned = toned_widgets(window)
    assert toned and all(text_colour(w) == TONES[w.property(TONE_PROPERTY)][side] for w in toned)
    chart = window.findChild(TrainPage).chart
    assert chart_colours(chart) == (TONES["series"][side], TONES["accent"][side], text, text)
    histogram = window.findChild(ReviewPage).histogram
    assert histogram_colours(histogram) == (TONES["series"][side], TONES["accent"][side], text)
    preview = window.findChild(PreviewPage)
    assert TONES["error"][side] in preview.examples.toHtml()  # the rejected example's badge
    assert note_background(preview) == palette.alternateBase().color().name()


@pytest.mark.slow
def test_a_switch_recolours_the_open_pages(window: MainWindow, qtbot: QtBot, project_id: str,
                                           fake_llm: FakeLLMServer, switch_to: Switch,
                                           app_look: None) -> None:
    light = QApplication.palette()
    wizard = window.open_project(project_id, "review")
    for step in ("preview", "hardware", "train", "review"):  # a page is built on its first visit
        wizard.go_to_index(step_index(step))
    histogram = window.findChild(ReviewPage).histogram
    histogram.show()  # as the page does when it has lengths to show
    qtbot.waitUntil(lambda: histogram.built, timeout=10_000)
    histogram.show_lengths([40, 52, 61, 75, 90], 64)
    window.findChild(TrainPage).chart.build()  # as when the Train page is first shown
    preview = window.findChild(PreviewPage)
    preview.show_groups([PreviewGroup(None, "a.txt", "Valves are checked daily.", [
        {"messages": [{"role": "user", "content": "How often?"},
                      {"role": "assistant", "content": "Weekly."}],
         "status": "rejected", "reject_reason": "not in the text", "tokens": 9}])])
    llm = preview.llm
    llm.provider.setCurrentIndex(llm.provider.findData("ollama"))
    llm.base_url.setText(fake_llm.base_url)
    llm.model.setCurrentText("no-such-model")
    llm.test.click()  # the connection test's answer: an error, in its tone
    qtbot.waitUntil(lambda: llm.test.isEnabled()
                    and llm.result.property(TONE_PROPERTY) == "error")
    assert window.findChild(HardwarePage).warnings in toned_widgets(window)
    check_theme(window, LIGHT, light)

    switch_to(dark_palette())
    check_theme(window, DARK, dark_palette())
    llm.model.setCurrentText("gpt-oss:20b")
    llm.test.click()  # now connected: the same label in another tone, on the dark palette
    qtbot.waitUntil(lambda: llm.test.isEnabled() and llm.result.property(TONE_PROPERTY) == "ok")
    assert text_colour(llm.result) == TONES["ok"][DARK]

    switch_to(light)
    check_theme(window, LIGHT, light)
    assert text_colour(llm.result) == TONES["ok"][LIGHT]
