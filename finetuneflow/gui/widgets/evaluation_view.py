"""An evaluation shown: the headline, the other scores, every question with both answers and
the judge's reason; and two runs' settings and scores side by side.

The widgets take the read model (core/evaluation/results.py) as it is: the page reads it from
the evaluation service and hands it over, so the numbers here are the report's and the CLI's.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.evaluation.cost import JudgeCost
from finetuneflow.core.evaluation.results import (
    Evaluation,
    EvaluationSummary,
    QuestionResult,
    RunScores,
)
from finetuneflow.core.evaluation.stats import percent, rate_text
from finetuneflow.core.terminal import printable
from finetuneflow.core.training.config import TrainingConfig
from finetuneflow.gui.colours import set_tone, tone_colour

NOT_EVALUATED = ("This run has not been evaluated yet. Evaluate it to see whether the "
                 "fine-tuned model answers held-out questions better than the base model: both "
                 "answer every question, and an LLM judge picks the better answer.")
DEFAULT_QUESTIONS = 50
MAX_QUESTIONS = 1000
SETTLE_MS = 400
OUTCOME_WORDS = {"win": "win", "tie": "tie", "loss": "loss", None: "not judged"}
OUTCOME_TONES = {"win": "ok", "loss": "error"}
OUTCOME_RANK = {"loss": 0, None: 1, "tie": 2, "win": 3}  # Evaluation.needing_a_look's order
Index = QModelIndex | QPersistentModelIndex


# --- numbers as text --------------------------------------------------------------------------

def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _perplexity(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _share(value: float | None) -> str:
    return "—" if value is None else percent(value)


def _pair(base: float | None, tuned: float | None, show: Callable[[float | None], str]
          ) -> str | None:
    """"base → fine-tuned", or None where neither model has the score."""
    return None if base is None and tuned is None else f"{show(base)} → {show(tuned)}"


def score_pairs(summary: EvaluationSummary) -> list[tuple[str, str]]:
    """Each score the evaluation has, as (name, "base → fine-tuned")."""
    pairs = [("Eval loss", _pair(summary.base_eval_loss, summary.tuned_eval_loss, _number)),
             ("Perplexity", _pair(summary.base_perplexity, summary.tuned_perplexity,
                                   _perplexity)),
             ("Token F1", _pair(summary.base_f1, summary.tuned_f1, _number)),
             ("ROUGE-L", _pair(summary.base_rouge_l, summary.tuned_rouge_l, _number)),
             ("Grounded", _pair(summary.base_grounded_share, summary.tuned_grounded_share,
                                _share))]
    return [(name, text) for name, text in pairs if text is not None]


def scores_line(summary: EvaluationSummary) -> str:
    pairs = score_pairs(summary)
    if not pairs:
        return "No other scores yet."
    return " · ".join(f"{name} {text}" for name, text in pairs) + "   (base → fine-tuned)"


def progress_note(summary: EvaluationSummary, elsewhere: bool = False) -> str:
    """What the headline cannot say: an evaluation not finished, and why. A running one is
    running `elsewhere` (another window, the command line), or was cut off when its process
    ended."""
    done = f"{summary.answered} of {summary.questions} questions answered"
    if summary.status == "succeeded":
        return ""
    if summary.status == "running" and elsewhere:
        return (f"Being evaluated in another window or from the command line: {done} so "
                "far. Come back to this page to see more.")
    word = {"running": "was cut off", "stopped": "stopped"}.get(summary.status, "failed")
    reason = f" {summary.message}" if summary.message else ""
    return f"The evaluation {word} with {done}.{reason} Evaluate again to go on from there."


# --- the per-question table -------------------------------------------------------------------

def _yes_no(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "no")


COLUMNS: tuple[tuple[str, Callable[[QuestionResult], Any], Callable[[Any], str]], ...] = (
    ("Outcome", lambda r: r.outcome, lambda v: OUTCOME_WORDS[v]),
    ("#", lambda r: r.question_id, str),
    ("Question", lambda r: r.question, lambda v: printable(" ".join(v.split()))),
    ("F1\nbase", lambda r: r.base_f1, _number),
    ("F1\ntuned", lambda r: r.tuned_f1, _number),
    ("ROUGE-L\nbase", lambda r: r.base_rouge_l, _number),
    ("ROUGE-L\ntuned", lambda r: r.tuned_rouge_l, _number),
    ("Grounded\nbase", lambda r: r.base_grounded, _yes_no),
    ("Grounded\ntuned", lambda r: r.tuned_grounded, _yes_no),
)
OUTCOME_COLUMN, QUESTION_COLUMN = 0, 2


class QuestionModel(QAbstractTableModel):
    """One evaluation's questions, in the order given (the view sorts through a proxy)."""

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[QuestionResult] = []

    def set_rows(self, rows: list[QuestionResult]) -> None:
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    def row_at(self, row: int) -> QuestionResult:
        return self._rows[row]

    def sort_key(self, row: int, column: int) -> tuple[Any, ...]:
        """Outcome sorts losses first (ties broken by question order, as in the report);
        a missing score sorts after every number."""
        result = self._rows[row]
        value = COLUMNS[column][1](result)
        if column == OUTCOME_COLUMN:
            return (OUTCOME_RANK[value], result.question_id)
        if column == QUESTION_COLUMN:
            return (value.casefold(), result.question_id)
        return (value is None, value or 0, result.question_id)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        result = self._rows[index.row()]
        _title, value_of, show = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return show(value_of(result))
        if role == Qt.ItemDataRole.ToolTipRole and index.column() == QUESTION_COLUMN:
            return printable(result.question)
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == OUTCOME_COLUMN:
            name = OUTCOME_TONES.get(result.outcome)
            return tone_colour(name) if name else None
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() not in (
                OUTCOME_COLUMN, QUESTION_COLUMN):
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None


class QuestionSort(QSortFilterProxyModel):
    def lessThan(self, left: Index, right: Index) -> bool:
        model = self.sourceModel()
        assert isinstance(model, QuestionModel)
        return bool(model.sort_key(left.row(), left.column())
                    < model.sort_key(right.row(), right.column()))


def detail_html(result: QuestionResult) -> str:
    """The selected question whole: both answers, the reference and the judge's reason."""
    def part(title: str, text: str | None, missing: str) -> str:
        # pre-wrap: an answer's line breaks and indentation (code, lists) are kept.
        body = html.escape(printable(text)) if text else f"<i>{missing}</i>"
        return (f'<p style="margin: 0"><b>{title}</b></p>'
                f'<p style="margin: 0 0 8px 0; white-space: pre-wrap">{body}</p>')

    verdict = OUTCOME_WORDS[result.outcome]
    return "".join((
        part(f"Question {result.question_id}", result.question, ""),
        part("Reference answer", result.reference, "none: a question you typed"),
        part("Base model", result.base_answer, "not answered yet"),
        part("Fine-tuned model", result.tuned_answer, "not answered yet"),
        part(f"Judge: {verdict} for the fine-tuned model", result.reason, "no reason given"),
        part("Source passage", result.passage, "none"),
    ))


def compact(table: QTableView) -> None:
    """Rows one line of text high, without row numbers."""
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)


# --- the section ------------------------------------------------------------------------------

class EvaluationView(QWidget):
    """Evaluate controls, then the evaluation of the run the page shows (or what to do)."""

    evaluate = Signal(bool, int)  # judge, max questions
    stop = Signal()
    questions_changed = Signal()  # the question count, settled: the judge's cost is new

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("evaluationView")
        self.headline = QLabel(NOT_EVALUATED, objectName="evaluationHeadline", wordWrap=True)
        font = self.headline.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.headline.setFont(font)
        self.scores = QLabel(objectName="evaluationScores", wordWrap=True)
        self.note = QLabel(objectName="evaluationNote", wordWrap=True, visible=False)
        for label in (self.headline, self.scores, self.note):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.questions = QuestionModel()
        self.sorted = QuestionSort()
        self.sorted.setSourceModel(self.questions)
        self.table = self._build_table()
        self.detail = QTextBrowser(objectName="questionDetail")
        self.detail.setPlaceholderText("Select a question to read both answers and the "
                                       "judge's reason.")
        self.results = QSplitter(Qt.Orientation.Vertical, visible=False)
        self.results.addWidget(self.table)
        self.results.addWidget(self.detail)
        self.results.setSizes([300, 200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._build_controls())
        layout.addWidget(self.headline)
        layout.addWidget(self.scores)
        layout.addWidget(self.note)
        layout.addWidget(self.results, 1)
        self.filler = QWidget()  # keeps the advice at the top while there is no table
        layout.addWidget(self.filler, 1)

    def _build_controls(self) -> QVBoxLayout:
        self.judge = QCheckBox("Ask the LLM judge which answer is better", checked=True,
                               objectName="evaluationJudge")
        self.judge.setToolTip("Each question goes to the project's LLM twice, the answers in "
                              "both orders. Without it: eval loss, overlap and grounding only.")
        self.max_questions = QSpinBox(objectName="evaluationQuestions", minimum=1,
                                      maximum=MAX_QUESTIONS, value=DEFAULT_QUESTIONS)
        self.max_questions.setToolTip("At most this many held-out questions (the same ones "
                                      "each time).")
        # Typing 120 passes 1 and 12: the cost is asked for once the number rests.
        self.settle = QTimer(self, singleShot=True, interval=SETTLE_MS)
        self.settle.timeout.connect(self.questions_changed.emit)
        self.max_questions.valueChanged.connect(lambda _value: self.settle.start())
        self.cost = QLabel(objectName="judgeCost", wordWrap=True, visible=False)
        self.cost.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.judge.toggled.connect(lambda on: self.cost.setVisible(on and bool(self.cost.text())))
        self.evaluate_button = QPushButton("Evaluate", objectName="evaluateButton")
        self.evaluate_button.clicked.connect(
            lambda: self.evaluate.emit(self.judge.isChecked(), self.max_questions.value()))
        self.stop_button = QPushButton("Stop", objectName="stopEvaluation", visible=False)
        self.stop_button.clicked.connect(self.stop.emit)
        row = QHBoxLayout()
        row.addWidget(self.evaluate_button)
        row.addWidget(self.stop_button)
        row.addWidget(QLabel("Questions:"))
        row.addWidget(self.max_questions)
        row.addWidget(self.judge)
        row.addStretch(1)
        self.progress = QProgressBar(objectName="evaluationProgress", maximum=1000,
                                     visible=False)
        self.status = QLabel(objectName="evaluationStatus", wordWrap=True, visible=False)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column = QVBoxLayout()
        column.addLayout(row)
        column.addWidget(self.cost)
        column.addWidget(self.progress)
        column.addWidget(self.status)
        return column

    def _build_table(self) -> QTableView:
        table = QTableView(objectName="evaluationTable")
        table.setModel(self.sorted)
        table.setSortingEnabled(True)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setWordWrap(False)
        compact(table)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(QUESTION_COLUMN, QHeaderView.ResizeMode.Stretch)
        table.selectionModel().currentRowChanged.connect(self._show_detail)
        return table

    # --- showing --------------------------------------------------------------------------------

    def show_evaluation(self, evaluation: Evaluation | None, elsewhere: bool = False) -> None:
        """The run's evaluation in the needing-a-look order, or the advice when there is none;
        `elsewhere`: an evaluation of the project runs in another process."""
        has_rows = evaluation is not None and bool(evaluation.rows)
        self.results.setVisible(has_rows)
        self.filler.setVisible(not has_rows)
        self.scores.setVisible(evaluation is not None)
        self.detail.clear()
        if evaluation is None:
            self.headline.setText(NOT_EVALUATED)
            self.note.setVisible(False)
            self.questions.set_rows([])
            return
        summary = evaluation.summary
        self.headline.setText(summary.headline)
        self.scores.setText(scores_line(summary))
        self.note.setText(progress_note(summary, elsewhere))
        set_tone(self.note, "error" if summary.status == "failed" else "warning")
        self.note.setVisible(bool(self.note.text()))
        if summary.message and summary.message in self.status.text():
            self.show_status("")  # the note says it, with what is done and how to go on
        self.questions.set_rows(evaluation.rows)
        self.table.sortByColumn(OUTCOME_COLUMN, Qt.SortOrder.AscendingOrder)
        if has_rows:
            self.table.selectRow(0)

    def shown_rows(self) -> list[QuestionResult]:
        """The questions in the order the table shows them."""
        return [self.questions.row_at(self.sorted.mapToSource(self.sorted.index(row, 0)).row())
                for row in range(self.sorted.rowCount())]

    def _show_detail(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            source = self.sorted.mapToSource(current)
            self.detail.setHtml(detail_html(self.questions.row_at(source.row())))

    def show_cost(self, cost: JudgeCost | str) -> None:
        """The judge's estimated cost for the questions chosen, or why it cannot be told."""
        self.cost.setText(cost if isinstance(cost, str) else (
            f"The judge: {cost.requests:,} requests to the project's LLM, about "
            f"{cost.prompt_tokens:,} prompt tokens and at most {cost.completion_tokens:,} "
            "answer tokens."))
        self.cost.setVisible(self.judge.isChecked())

    def set_busy(self, busy: bool) -> None:
        for widget in (self.evaluate_button, self.judge, self.max_questions):
            widget.setEnabled(not busy)
        self.stop_button.setVisible(busy)
        self.stop_button.setEnabled(True)
        self.progress.setVisible(busy)
        self.progress.setValue(0)

    def show_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.show_status(message)

    def show_status(self, text: str, tone: str | None = None) -> None:
        set_tone(self.status, tone)
        self.status.setText(text)
        self.status.setVisible(bool(text))


# --- two runs side by side --------------------------------------------------------------------

def _setting_label(name: str) -> str:
    field = TrainingConfig.__dataclass_fields__.get(name)
    return str(field.metadata["label"]) if field is not None else name.replace("_", " ")


def _setting_text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "—" if value is None else str(value)


def _judge_text(summary: EvaluationSummary | None) -> str:
    if summary is None:
        return "not evaluated"
    tally = summary.tally
    if tally is None:
        return "not judged"
    return (f"{rate_text(tally)} (wins {tally.wins}, ties {tally.ties}, "
            f"losses {tally.losses})")


ALL_SETTINGS = "Settings"
Section = tuple[str, list[tuple[str, str, str]]]  # a title, then (what, first, second)


def comparison(first: RunScores, second: RunScores, all_settings: bool = False
               ) -> list[Section]:
    """Two runs' scores, then the settings that differ (every setting with `all_settings`)."""
    def scores(run: RunScores) -> dict[str, str]:
        found = {"Judge (fine-tuned wins)": _judge_text(run.evaluation),
                 "Final eval loss (training)": _number(run.final_eval_loss)}
        return found | (dict(score_pairs(run.evaluation)) if run.evaluation else {})

    def settings(run: RunScores) -> dict[str, str]:
        found = {"Base model": run.base_model, "Method": run.method.upper()}
        return found | {_setting_label(k): _setting_text(v) for k, v in run.settings.items()}

    def side_by_side(a: dict[str, str], b: dict[str, str], keep_same: bool
                     ) -> list[tuple[str, str, str]]:
        return [(name, a.get(name, "—"), b.get(name, "—")) for name in dict.fromkeys([*a, *b])
                if keep_same or a.get(name) != b.get(name)]

    changed = side_by_side(settings(first), settings(second), all_settings)
    return [("Scores (base → fine-tuned)", side_by_side(scores(first), scores(second), True)),
            (ALL_SETTINGS if all_settings else "Settings that differ",
             changed or [("", "the same settings", "the same settings")])]


class RunComparison(QDialog):
    """A run's settings and scores beside another finished run's (RunScores, newest first)."""

    def __init__(self, runs: list[RunScores], this_run: int, other_run: int,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runComparison")
        self.setWindowTitle("Compare runs")
        self.runs = {run.run_id: run for run in runs}
        self.this_run = this_run
        self.other = QComboBox(objectName="compareWith")
        for run_id in sorted(self.runs, reverse=True):  # newest first
            if run_id != this_run:
                self.other.addItem(f"Run {run_id}", run_id)
        self.other.setCurrentIndex(self.other.findData(other_run))
        self.other.currentIndexChanged.connect(lambda _index: self.fill())
        self.all_settings = QCheckBox("Show every setting, not only those that differ",
                                      objectName="allSettings")
        self.all_settings.toggled.connect(lambda _on: self.fill())
        self.table = QTableWidget(0, 3, objectName="comparisonTable")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        compact(self.table)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        choose = QHBoxLayout()
        choose.addWidget(QLabel(f"Run {this_run} compared with"))
        choose.addWidget(self.other)
        choose.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(choose)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.all_settings)
        layout.addWidget(buttons)
        # As tall as its rows (a few, unless every setting is listed), no blank table below.
        self.table.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.fill()
        self.resize(720, self.sizeHint().height())

    def fill(self) -> None:
        other = self.other.currentData()
        sections = comparison(self.runs[self.this_run], self.runs[other],
                              self.all_settings.isChecked())
        self.table.setHorizontalHeaderLabels(["", f"Run {self.this_run}", f"Run {other}"])
        self.table.clearSpans()
        self.table.setRowCount(sum(len(rows) + 1 for _title, rows in sections))
        row = 0
        for title, rows in sections:
            self._heading(row, title)
            for name, left, right in rows:
                row += 1
                # In the list of every setting, the ones that differ stand out.
                self._line(row, name, left, right, left != right and title == ALL_SETTINGS)
            row += 1

    def _heading(self, row: int, title: str) -> None:
        self.table.setSpan(row, 0, 1, 3)
        item = QTableWidgetItem(title)
        item.setFont(self._bold())
        self.table.setItem(row, 0, item)

    def _line(self, row: int, name: str, left: str, right: str, stand_out: bool) -> None:
        label = QTableWidgetItem(name)
        label.setForeground(self.palette().placeholderText().color())
        self.table.setItem(row, 0, label)
        for column, text in ((1, left), (2, right)):
            item = QTableWidgetItem(text)
            if stand_out:
                item.setFont(self._bold())
            self.table.setItem(row, column, item)

    def _bold(self) -> QFont:
        font = QFont(self.font())
        font.setBold(True)
        return font
