"""The Preview and Review pages show the database's counts (issue 14: "4 rejected" over 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.preview_page import PreviewPage
from finetuneflow.gui.pages.review_page import ReviewPage
from finetuneflow.services.context import AppContext
from finetuneflow.services.generation import GenerationService
from tests.gui.test_preview_and_review_pages import project_id, use_server
from tests.helpers.fake_llm import FakeLLMServer
from tests.integration.test_counts import rejecting_responder, stored

pytestmark = pytest.mark.slow
__all__ = ["project_id"]  # the fixture, shared with the Preview and Review pages' tests


def test_preview_and_review_labels_match_the_database(
        window: MainWindow, qtbot: QtBot, project_id: str, context: AppContext,
        home: Path) -> None:
    with FakeLLMServer(responder=rejecting_responder) as server:
        use_server(context, project_id, server)
        page = window.open_project(project_id, "preview").currentPage()
        assert isinstance(page, PreviewPage)
        page.generate.click()
        qtbot.waitUntil(lambda: page.generate.isEnabled() and page.chunks.count() > 0,
                        timeout=60_000)
        kept, rejected = stored(home, project_id, preview=True)
        assert rejected > 0
        assert f"{kept} examples kept, {rejected} rejected" in page.status.text()
        listed = [e for group in page.groups for e in group.examples]
        assert sum(e["status"] == "rejected" for e in listed) == rejected

        GenerationService(context).run(project_id, preview=False)
    review = window.open_project(project_id, "review").currentPage()
    assert isinstance(review, ReviewPage)
    kept, rejected = stored(home, project_id, preview=False)
    numbers = [int(n) for n in re.findall(r"<b>(\d+)</b>", review.stats.text())]
    assert numbers == [kept, rejected]
