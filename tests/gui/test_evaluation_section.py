"""The Export page's Evaluation section and the Train page's run comparison.

The widgets are given the read model (core/evaluation/results.py) built here by hand: it is
data, the same objects the evaluation service returns."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QThreadPool
from PySide6.QtGui import QPainter, QPixmap
from pytestqt.qtbot import QtBot

from finetuneflow.core.evaluation.cost import JudgeCost
from finetuneflow.core.evaluation.judge import Outcome
from finetuneflow.core.evaluation.results import (
    Evaluation,
    EvaluationSummary,
    QuestionResult,
    RunScores,
)
from finetuneflow.core.evaluation.stats import headline, rate_text, tally
from finetuneflow.core.generation import LLMSettings
from finetuneflow.core.statuses import JobKind, JobStatus
from finetuneflow.core.terminal import printable
from finetuneflow.gui.main_window import MainWindow
from finetuneflow.gui.pages.export_page import EVALUATE, EVALUATION_STOPPED, ExportPage
from finetuneflow.gui.pages.train_page import TrainPage
from finetuneflow.gui.widgets.evaluation_view import (
    COLUMNS,
    NOT_EVALUATED,
    EvaluationView,
    RunComparison,
    scores_line,
)
from finetuneflow.services import evaluation as evaluations
from finetuneflow.services.base_model import ModelService
from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService
from finetuneflow.services.generation import GenerationService
from finetuneflow.services.jobs import JobService
from finetuneflow.services.projects import ProjectService
from finetuneflow.storage.home import Home
from tests.helpers.fake_llm import Api, FakeLLMServer, last_user_text
from tests.helpers.finished_run import arithmetic_chats, train
from tests.helpers.gui_projects import project_with_examples
from tests.helpers.images import assert_not_blank

SHOTS = Path(os.environ.get("EVALGUI_SHOTS", "/tmp/evalgui-shots"))
SIZE = (1100, 800)


def question(number: int, outcome: Outcome | None, f1: float | None = None) -> QuestionResult:
    return QuestionResult(
        question_id=number, question=f"How long are records of study {number} kept?",
        reference=f"{number} years.", passage=f"Records of study {number} are kept {number} "
        "years.", base_answer=f"Maybe {number + 1} years.",
        tuned_answer=f"They are kept {number} years.\n  - by law", base_f1=0.25,
        tuned_f1=f1, base_rouge_l=0.2, tuned_rouge_l=0.5, base_grounded=False,
        tuned_grounded=True, outcome=outcome, reason=f"Reason {number}: the period is right.")


def evaluation(rows: list[QuestionResult], status: str = "succeeded",
               message: str = "") -> Evaluation:
    counted = tally(row.outcome for row in rows)
    summary = EvaluationSummary(
        evaluation_id=1, run_id=2, status=status, questions=len(rows),
        answered=len(rows), tally=counted, headline=headline(counted),
        base_eval_loss=6.38, tuned_eval_loss=6.33, base_perplexity=590.1,
        tuned_perplexity=561.24, base_f1=0.21, tuned_f1=0.354, base_rouge_l=0.18,
        tuned_rouge_l=0.3, base_grounded_share=0.4, tuned_grounded_share=0.62,
        message=message)
    return Evaluation(summary, rows)


MIXED: list[Outcome | None] = ["win", "loss", "tie", None, "loss", "win", "win"]


@pytest.fixture
def view(qtbot: QtBot) -> EvaluationView:
    shown = EvaluationView()
    qtbot.addWidget(shown)
    shown.resize(*SIZE)
    shown.show()
    return shown


def mixed() -> Evaluation:
    return evaluation([question(n, outcome, f1=n / 10 if n != 4 else None)
                       for n, outcome in enumerate(MIXED, start=1)])


def test_the_section_shows_the_objects_numbers(view: EvaluationView) -> None:
    shown = mixed()
    view.show_evaluation(shown)
    assert view.headline.text() == shown.summary.headline
    assert view.headline.text().startswith("The fine-tuned model wins 3 of 6, ties 1, loses 2")
    assert view.scores.text() == (
        "Eval loss 6.38 → 6.33 · Perplexity 590.1 → 561.2 · Token F1 0.21 → 0.35 · "
        "ROUGE-L 0.18 → 0.30 · Grounded 40 % → 62 %   (base → fine-tuned)")
    assert view.results.isVisible() and not view.note.isVisible()
    assert view.sorted.rowCount() == len(MIXED)
    cells = [view.sorted.index(0, column).data() for column in range(len(COLUMNS))]
    assert cells == ["loss", "2", "How long are records of study 2 kept?", "0.25", "0.20",
                     "0.20", "0.50", "no", "yes"]


def test_losses_needing_a_look_come_first_and_the_first_is_open(view: EvaluationView) -> None:
    shown = mixed()
    view.show_evaluation(shown)
    assert view.shown_rows() == shown.needing_a_look()
    assert [row.question_id for row in view.shown_rows()] == [2, 5, 4, 3, 1, 6, 7]
    assert view.table.horizontalHeader().sortIndicatorSection() == 0
    detail = view.detail.toPlainText()
    assert "Base model\nMaybe 3 years.\n" in detail
    for text in ("How long are records of study 2 kept?", "2 years.", "Maybe 3 years.",
                 "They are kept 2 years.\n  - by law", "Reason 2: the period is right.",
                 "Judge: loss for the fine-tuned model", "Records of study 2 are kept"):
        assert text in detail


def test_every_column_sorts_both_ways(view: EvaluationView) -> None:
    view.show_evaluation(mixed())
    for column in range(len(COLUMNS)):
        view.table.sortByColumn(column, Qt.SortOrder.AscendingOrder)
        up = [row.question_id for row in view.shown_rows()]
        view.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
        down = [row.question_id for row in view.shown_rows()]
        assert sorted(up) == list(range(1, 8)) and down == up[::-1], COLUMNS[column][0]
    view.table.sortByColumn(4, Qt.SortOrder.AscendingOrder)  # F1 tuned: a missing one last
    assert [row.question_id for row in view.shown_rows()] == [1, 2, 3, 5, 6, 7, 4]
    view.table.sortByColumn(2, Qt.SortOrder.AscendingOrder)  # question text, then its number
    assert [row.question_id for row in view.shown_rows()] == [1, 2, 3, 4, 5, 6, 7]


def test_selecting_a_row_shows_that_question(view: EvaluationView, qtbot: QtBot) -> None:
    view.show_evaluation(mixed())
    view.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    view.table.selectRow(0)  # question 7, a win
    detail = view.detail.toPlainText()
    assert "They are kept 7 years." in detail and "Judge: win" in detail
    assert "Maybe 3 years." not in detail


def test_no_evaluation_gives_the_advice(view: EvaluationView) -> None:
    view.show_evaluation(mixed())
    view.show_evaluation(None)
    assert view.headline.text() == NOT_EVALUATED
    assert not view.results.isVisible() and not view.scores.isVisible()
    assert view.sorted.rowCount() == 0
    assert view.evaluate_button.isEnabled()


def test_a_stopped_evaluation_says_what_is_done_and_how_to_go_on(
        view: EvaluationView) -> None:
    rows = [question(1, "win"), question(2, None)]
    stopped = evaluation(rows, status="stopped", message="Stopped by you.")
    view.show_evaluation(stopped)
    assert view.note.text() == ("The evaluation stopped with 2 of 2 questions answered. "
                                "Stopped by you. Evaluate again to go on from there.")
    assert view.note.isVisible()


def test_a_running_evaluation_is_either_elsewhere_or_was_cut_off(view: EvaluationView) -> None:
    running = evaluation([question(1, "win")], status="running")
    view.show_evaluation(running)
    assert view.note.text() == ("The evaluation was cut off with 1 of 1 questions answered. "
                                "Evaluate again to go on from there.")
    view.show_evaluation(running, elsewhere=True)
    assert view.note.text().startswith("Being evaluated in another window or from the command "
                                       "line: 1 of 1 questions answered so far.")


def test_evaluate_asks_with_the_judge_and_the_question_count(view: EvaluationView,
                                                             qtbot: QtBot) -> None:
    view.max_questions.setValue(20)
    view.judge.setChecked(False)
    with qtbot.waitSignal(view.evaluate) as asked:
        qtbot.mouseClick(view.evaluate_button, Qt.MouseButton.LeftButton)
    assert asked.args == [False, 20]
    view.set_busy(True)
    assert not view.evaluate_button.isEnabled() and view.stop_button.isVisible()
    with qtbot.waitSignal(view.stop):
        qtbot.mouseClick(view.stop_button, Qt.MouseButton.LeftButton)


def test_the_judges_cost_is_asked_for_once_the_count_rests_and_shown(
        view: EvaluationView, qtbot: QtBot) -> None:
    asked: list[int] = []
    view.questions_changed.connect(lambda: asked.append(view.max_questions.value()))
    with qtbot.waitSignal(view.questions_changed):
        for value in (1, 12, 120):  # typing 120
            view.max_questions.setValue(value)
    assert asked == [120]
    view.show_cost(JudgeCost(requests=240, prompt_tokens=61_234, completion_tokens=48_000))
    assert view.cost.text() == ("The judge: 240 requests to the project's LLM, about 61,234 "
                                "prompt tokens and at most 48,000 answer tokens.")
    view.judge.setChecked(False)
    assert view.cost.isHidden()


def runs() -> list[RunScores]:
    shown = mixed().summary
    return [RunScores(3, "succeeded", "tiny-llama", "lora",
                      {"num_epochs": 3.0, "learning_rate": 2e-4, "lora_r": 16}, 1.234, shown),
            RunScores(2, "succeeded", "tiny-llama", "lora",
                      {"num_epochs": 1.0, "learning_rate": 2e-4, "lora_r": 8}, 1.5, None),
            RunScores(1, "succeeded", "tiny-llama", "qlora",
                      {"num_epochs": 3.0, "learning_rate": 1e-4, "lora_r": 16}, None, None)]


def table_text(dialog: RunComparison) -> list[list[str]]:
    table = dialog.table
    return [[table.item(row, column).text() if table.item(row, column) else ""
             for column in range(3)] for row in range(table.rowCount())]


def test_the_comparison_lists_the_other_runs_and_what_differs(qtbot: QtBot) -> None:
    dialog = RunComparison(runs(), this_run=3, other_run=2)
    qtbot.addWidget(dialog)
    assert [dialog.other.itemText(i) for i in range(dialog.other.count())] == ["Run 2", "Run 1"]
    rows = table_text(dialog)
    assert rows[0][0] == "Scores (base → fine-tuned)"
    rate = rate_text(tally(MIXED))
    assert rate == "58 % ± 31 %"  # (3 + 1/2) / 6, Wilson's interval
    assert ["Judge (fine-tuned wins)", f"{rate} (wins 3, ties 1, losses 2)",
            "not evaluated"] in rows
    assert ["Final eval loss (training)", "1.23", "1.50"] in rows
    assert ["Token F1", "0.21 → 0.35", "—"] in rows
    settings = rows[rows.index(["Settings that differ", "", ""]) + 1:]
    assert settings == [["Epochs", "3", "1"], ["LoRA rank", "16", "8"]]
    dialog.other.setCurrentIndex(1)  # run 1: another method and learning rate
    rows = table_text(dialog)
    assert ["Method", "LORA", "QLORA"] in rows and ["Learning rate", "0.0002", "0.0001"] in rows
    assert ["Final eval loss (training)", "1.23", "—"] in rows
    dialog.all_settings.setChecked(True)
    assert ["Base model", "tiny-llama", "tiny-llama"] in table_text(dialog)


def test_screenshots_of_the_section_and_the_comparison(view: EvaluationView,
                                                       qtbot: QtBot) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    view.show_evaluation(mixed())
    section = SHOTS / "evaluation-view.png"
    view.grab().save(str(section))
    assert_not_blank(section)
    dialog = RunComparison(runs(), this_run=3, other_run=2)
    qtbot.addWidget(dialog)
    dialog.show()
    compared = SHOTS / "run-comparison.png"
    dialog.grab().save(str(compared))
    assert_not_blank(compared)


# --- the pages on a real finished run ---------------------------------------------------------

CHILD_TIMEOUT_MS = 300_000  # the trainer child on a busy 2-core machine


@dataclass(frozen=True)
class Trained:
    home: Path
    project_id: str


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Trained]:
    """One short training of the tiny model for the module: its held-out split is what the
    evaluation asks."""
    root = tmp_path_factory.mktemp("evaluation-section")
    patch = pytest.MonkeyPatch()
    patch.setenv("OMP_NUM_THREADS", "1")  # the tiny model only loses time to threads
    context = AppContext.open(Home(root / "home"))
    try:
        project_id = ProjectService(context).create("Arithmetic tutor").id
        ModelService(context).choose(project_id, str(tiny_model_dir))
        DatasetService(context).import_file(project_id, arithmetic_chats(root / "chats.jsonl"))
        train(context, project_id)
        yield Trained(root / "home", project_id)
    finally:
        context.close()
        patch.undo()


def fair_judge(request_json: dict[str, Any], _api: Api) -> str:
    """A judge that prefers the answer holding the reference, then the shorter one; the same
    verdict in both orders."""
    sections = dict(re.findall(r"(Reference answer|Answer A|Answer B):\n(.*?)(?:\n\n|$)",
                               last_user_text(request_json), re.S))
    reference = sections["Reference answer"].strip()

    def merit(answer: str) -> tuple[bool, int]:
        return reference in answer, -len(answer)

    a, b = merit(sections["Answer A"]), merit(sections["Answer B"])
    winner = "tie" if a == b else ("A" if a > b else "B")
    return json.dumps({"winner": winner, "reason": f"{winner}: closer to {reference}."})


@pytest.fixture
def opened(qtbot: QtBot, trained: Trained, fake_llm: FakeLLMServer,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MainWindow, ExportPage]]:
    """The trained project's Export page, its LLM the fake judge."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    fake_llm.set_responder(fair_judge)
    context = AppContext.open(Home(trained.home))
    GenerationService(context).set_llm_settings(trained.project_id, LLMSettings(
        provider="ollama", base_url=fake_llm.base_url, model="gpt-oss:20b"))
    window = MainWindow(context)
    qtbot.addWidget(window)
    window.resize(*SIZE)
    window.show()
    yield window, export_page(window, trained.project_id, qtbot)
    QThreadPool.globalInstance().waitForDone(CHILD_TIMEOUT_MS)  # nothing outlives the home
    context.close()


def export_page(window: MainWindow, project_id: str, qtbot: QtBot) -> ExportPage:
    page = window.open_project(project_id, "export").currentPage()
    assert isinstance(page, ExportPage)
    qtbot.waitUntil(lambda: not page.runner.is_running("report"), timeout=60_000)
    return page


def evaluate(page: ExportPage, qtbot: QtBot, questions: int, judge: bool = True) -> None:
    view = page.evaluation_view
    page.tabs.setCurrentWidget(view)
    view.max_questions.setValue(questions)
    view.judge.setChecked(judge)
    qtbot.mouseClick(view.evaluate_button, Qt.MouseButton.LeftButton)
    assert view.stop_button.isVisible() and not view.evaluate_button.isEnabled()
    qtbot.waitUntil(lambda: not page.runner.is_running(EVALUATE), timeout=CHILD_TIMEOUT_MS)


def assert_shows_the_database(page: ExportPage) -> Evaluation:
    assert page.run_id is not None
    stored = evaluations.evaluation(page.context, page.project_id, page.run_id)
    assert stored is not None
    view = page.evaluation_view
    assert view.headline.text() == stored.summary.headline
    assert view.scores.text() == scores_line(stored.summary)
    assert view.shown_rows() == stored.needing_a_look()
    return stored


@pytest.mark.slow
def test_the_export_page_evaluates_the_run_and_shows_what_is_stored(
        opened: tuple[MainWindow, ExportPage], qtbot: QtBot, trained: Trained) -> None:
    window, page = opened
    view = page.evaluation_view
    assert page.tabs.tabText(page.tabs.indexOf(view)) == "Evaluation"
    assert view.headline.text() == NOT_EVALUATED and view.results.isHidden()
    evaluate(page, qtbot, questions=6)
    assert view.evaluate_button.isEnabled() and view.stop_button.isHidden()
    assert view.status.isHidden(), view.status.text()
    stored = assert_shows_the_database(page)
    summary = stored.summary
    assert summary.status == "succeeded" and summary.questions == summary.answered == 6
    assert summary.tally is not None and summary.tally.judged + summary.tally.unjudged == 6
    assert view.headline.text().startswith("The fine-tuned model wins ")
    assert all(row.base_answer is not None and row.tuned_answer is not None
               for row in view.shown_rows())
    first = view.shown_rows()[0]  # the tiny model's answers: control characters escaped
    assert first.tuned_answer is not None and first.base_answer is not None
    for text in (first.question, first.base_answer, first.tuned_answer, first.reason):
        assert printable(text) in view.detail.toPlainText()
    qtbot.waitUntil(lambda: not page.runner.is_running("report"), timeout=60_000)
    assert summary.headline in page.report.toPlainText()  # the report, read again, has it
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "export-page-evaluation.png"
    window.grab().save(str(shot))
    assert_not_blank(shot)
    # The app opened again shows the same evaluation.
    window.close()
    context = AppContext.open(Home(trained.home))
    try:
        again = MainWindow(context)
        qtbot.addWidget(again)
        again.show()
        reopened = export_page(again, trained.project_id, qtbot)
        assert assert_shows_the_database(reopened) == stored
        assert reopened.evaluation_view.note.isHidden()
        again.close()
        QThreadPool.globalInstance().waitForDone(CHILD_TIMEOUT_MS)
    finally:
        context.close()


@pytest.mark.slow
def test_stop_keeps_what_is_done_and_evaluate_goes_on(
        opened: tuple[MainWindow, ExportPage], qtbot: QtBot) -> None:
    _window, page = opened
    view = page.evaluation_view
    page.tabs.setCurrentWidget(view)
    view.max_questions.setValue(8)
    qtbot.mouseClick(view.evaluate_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(view.stop_button, Qt.MouseButton.LeftButton)  # before any answer
    qtbot.waitUntil(lambda: not page.runner.is_running(EVALUATE), timeout=CHILD_TIMEOUT_MS)
    assert view.status.text() == EVALUATION_STOPPED
    job = JobService(page.context).latest(page.project_id, JobKind.EVAL)
    assert job is not None and job.status is JobStatus.CANCELLED
    stored = assert_shows_the_database(page)
    assert stored.summary.status == "stopped" and view.note.text().startswith(
        "The evaluation stopped with ")
    evaluate(page, qtbot, questions=8)
    resumed = assert_shows_the_database(page)
    assert resumed.summary.evaluation_id == stored.summary.evaluation_id
    assert resumed.summary.status == "succeeded"
    assert resumed.summary.answered == resumed.summary.questions > 0


@pytest.mark.slow
def test_a_judge_that_cannot_be_reached_is_said_on_the_page(
        opened: tuple[MainWindow, ExportPage], qtbot: QtBot, trained: Trained,
        fake_llm: FakeLLMServer) -> None:
    _window, page = opened
    GenerationService(page.context).set_llm_settings(trained.project_id, LLMSettings(
        provider="ollama", base_url=f"http://127.0.0.1:{free_port()}", model="gpt-oss:20b"))
    evaluate(page, qtbot, questions=3)
    view = page.evaluation_view
    assert view.evaluate_button.isEnabled() and view.stop_button.isHidden()
    job = JobService(page.context).latest(page.project_id, JobKind.EVAL)
    assert job is not None and job.status is JobStatus.FAILED
    stored = assert_shows_the_database(page)
    assert stored.summary.status == "failed"
    # Said once, in the note, with what is kept and how to go on.
    assert view.status.isHidden() and view.note.property("tone") == "error"
    cause = "The judge cannot be used: Could not connect to http://127.0.0.1:"
    assert view.note.text().startswith(
        f"The evaluation failed with {stored.summary.answered} of "
        f"{stored.summary.questions} questions answered. {cause}")
    assert view.note.text().endswith("Evaluate again to go on from there.")
    # The judge is checked before the answers, so a dead one costs no time answering.
    assert stored.summary.answered == 0


@pytest.mark.slow
def test_an_evaluation_refused_says_why_and_nothing_changes(
        opened: tuple[MainWindow, ExportPage], qtbot: QtBot) -> None:
    _window, page = opened
    assert page.run_id is not None
    before = evaluations.evaluation(page.context, page.project_id, page.run_id)
    headline_before = page.evaluation_view.headline.text()
    jobs = JobService(page.context)
    training = jobs.create(page.project_id, JobKind.TRAIN)
    jobs.start(training)  # owned by this living process, as a training in another window
    try:
        evaluate(page, qtbot, questions=3)
    finally:
        jobs.cancel(training)
    view = page.evaluation_view
    assert view.status.text() == ("A training is running and needs the GPU: evaluate when it "
                                  "is done, or stop it first.")
    assert view.status.property("tone") == "error" and view.evaluate_button.isEnabled()
    assert evaluations.evaluation(page.context, page.project_id, page.run_id) == before
    assert view.headline.text() == headline_before


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_train_page_compares_finished_runs(
        window: MainWindow, qtbot: QtBot, context: AppContext, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    project_id = project_with_examples(window, context, tiny_model_dir, tmp_path, "Runs", 12)
    finished = {1: {"lora_r": 8, "num_epochs": 1.0}, 2: {"lora_r": 16, "num_epochs": 3.0},
                3: {"lora_r": 16, "num_epochs": 2.0}}

    def finish(run_id: int) -> None:  # as `finetuneflow train` leaves a run, from outside
        with context.transaction() as tx:
            tx.runs.restore_succeeded(project_id, run_id, {"method": "lora", **finished[run_id]},
                                      {"final_eval_loss": 1.0 + run_id / 10},
                                      {"adapter": f"artifacts/run-{run_id}/adapter"})

    finish(1)
    page = window.open_project(project_id, "train").currentPage()
    assert isinstance(page, TrainPage) and page.compare_button.isHidden()  # one run alone
    finish(2)
    finish(3)
    page.arrive()  # as the wizard does when the person comes back to the step
    assert page.state.text() == "Last run (3): succeeded."  # the newest run, as in the database
    assert page.compare_button.isVisible() and page.compare_button.text() == (
        "Compare with run 2")
    qtbot.mouseClick(page.compare_button, Qt.MouseButton.LeftButton)
    dialog = page.comparison
    assert dialog is not None and dialog.isVisible()
    assert [dialog.other.itemText(i) for i in range(dialog.other.count())] == ["Run 2", "Run 1"]
    rows = table_text(dialog)
    assert ["Final eval loss (training)", "1.30", "1.20"] in rows
    assert ["Epochs", "2", "3"] in rows and ["LoRA rank", "16", "16"] not in rows
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "train-page-comparison.png"
    window.resize(*SIZE)
    over_window(window, dialog).save(str(shot))
    assert_not_blank(shot)
    dialog.close()


def over_window(window: MainWindow, dialog: RunComparison) -> QPixmap:
    """The window with the dialog in its middle, as the person sees them (offscreen, each top
    level window is drawn alone)."""
    picture = window.grab()
    painter = QPainter(picture)
    drawn = dialog.grab()
    painter.drawPixmap((picture.width() - drawn.width()) // 2,
                       (picture.height() - drawn.height()) // 2, drawn)
    painter.end()
    return picture
