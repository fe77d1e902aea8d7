"""The Export page's Evaluation section and the Train page's run comparison.

The widgets are given the read model (core/evaluation/results.py) built here by hand: it is
data, the same objects the evaluation service returns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from finetuneflow.core.evaluation.judge import Outcome
from finetuneflow.core.evaluation.results import (
    Evaluation,
    EvaluationSummary,
    QuestionResult,
    RunScores,
)
from finetuneflow.core.evaluation.stats import headline, rate_text, tally
from finetuneflow.gui.widgets.evaluation_view import (
    COLUMNS,
    NOT_EVALUATED,
    EvaluationView,
    RunComparison,
)
from tests.helpers.images import assert_not_blank

SHOTS = Path(os.environ.get("EVALGUI_SHOTS", "/tmp/evalgui-shots"))
SIZE = (1100, 800)


def question(number: int, outcome: Outcome | None, f1: float | None = None) -> QuestionResult:
    return QuestionResult(
        question_id=number, question=f"How long are records of study {number} kept?",
        reference=f"{number} years.", passage=f"Records of study {number} are kept {number} "
        "years.", base_answer=f"Maybe {number + 1} years.",
        tuned_answer=f"They are kept {number} years.", base_f1=0.25,
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
    for text in ("How long are records of study 2 kept?", "2 years.", "Maybe 3 years.",
                 "They are kept 2 years.", "Reason 2: the period is right.",
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
