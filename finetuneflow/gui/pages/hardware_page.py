"""Step 6 — Hardware: what this computer (or a machine reached over SSH) has, what fits, and the
training settings."""

from __future__ import annotations

import shlex
from typing import Any

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QHideEvent, QPainter, QPaintEvent, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from finetuneflow.core.child_protocol import ProbeEvent
from finetuneflow.core.steps import Step
from finetuneflow.core.training.config import PRESETS, TrainingConfig, field_metadata, preset_config
from finetuneflow.core.training.estimate import MemoryEstimate
from finetuneflow.core.training.timing import RunEstimate
from finetuneflow.core.units import format_bytes, format_duration
from finetuneflow.gui.colours import set_tone, tone_colour
from finetuneflow.gui.errors import describe
from finetuneflow.gui.pages.step_page import StepPage
from finetuneflow.gui.workers import TaskRunner
from finetuneflow.services.context import AppContext
from finetuneflow.services.hardware import HardwareService
from finetuneflow.services.machines import list_machines, machine_probe
from finetuneflow.services.projects import ProjectSummary
from finetuneflow.services.train_location import choose_train_location, train_location
from finetuneflow.services.training import TrainingPlan, TrainingService

INT_MAX = 2**31 - 1  # a QSpinBox holds a C int
# What a zero means, shown in the box itself: "0" alone reads as "no steps at all".
ZERO_MEANS = {"max_steps": "0 (run the epochs)", "early_stopping_patience": "0 (off)",
              "divergence_factor": "0 (off)", "warmup_ratio": "0 (none)",
              "lora_dropout": "0 (none)", "early_stopping_threshold": "0 (any drop)"}
# Settings the recommender fits to this computer: a preset is still the preset after them.
FITTED = ("method", "per_device_batch_size", "gradient_accumulation_steps", "max_seq_length",
          "activation_checkpointing")
SEGMENT_COLOURS = (("Model weights", "#4e79a7"), ("Adapter + optimizer", "#f28e2b"),
                   ("Activations", "#59a14f"), ("Overhead", "#bab0ac"))


def describe_probe(probe: ProbeEvent) -> str:
    lines = [f"GPU {gpu.get('index', i)}: {gpu.get('name')} — {format_bytes(gpu['free_bytes'])} "
             f"free of {format_bytes(gpu['total_bytes'])}" for i, gpu in enumerate(probe.gpus)]
    if not probe.gpus:
        lines.append("No CUDA GPU" + (" · Apple GPU (MPS) available" if probe.mps else
                                      ": training runs on the CPU, slowly."))
    lines.append(f"CPU: {probe.cpu_model} · {probe.cpu_cores} cores")
    if probe.ram_total_bytes:
        lines.append(f"Memory: {format_bytes(probe.ram_free_bytes or 0)} free of "
                     f"{format_bytes(probe.ram_total_bytes)}")
    if probe.disk_free_bytes is not None:
        lines.append(f"Disk: {format_bytes(probe.disk_free_bytes)} free")
    return "\n".join(lines)


class MemoryBar(QWidget):
    """The estimate's parts as stacked segments against the memory the run may use."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(34)
        self.estimate: MemoryEstimate | None = None
        self.budget = 0

    def show_estimate(self, estimate: MemoryEstimate, budget: int) -> None:
        self.estimate, self.budget = estimate, budget
        self.setToolTip(estimate.summary() + f" · available {format_bytes(budget)}")
        self.update()

    def clear(self) -> None:
        self.estimate, self.budget = None, 0
        self.setToolTip("")
        self.update()

    def parts(self) -> list[int]:
        e = self.estimate
        return [] if e is None else [e.weights, e.trainable + e.optimizer, e.activations,
                                     e.overhead]

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        frame = QRectF(self.rect()).adjusted(1, 1, -1, -1)
        painter.fillRect(frame, self.palette().base())
        painter.setPen(self.palette().text().color())
        painter.drawRect(frame)
        if self.estimate is None:
            return
        scale = max(self.budget, sum(self.parts()), 1)
        x = frame.left()
        for size, (_name, colour) in zip(self.parts(), SEGMENT_COLOURS, strict=True):
            width = frame.width() * size / scale
            painter.fillRect(QRectF(x, frame.top(), width, frame.height()), QColor(colour))
            x += width
        if self.budget and sum(self.parts()) > self.budget:  # over budget: a red limit line
            limit = frame.left() + frame.width() * self.budget / scale
            painter.fillRect(QRectF(limit - 1, frame.top(), 3, frame.height()),
                             tone_colour("error"))


def _legend() -> QLabel:
    items = " ".join(f"<span style='color:{colour}'>■</span> {name}&nbsp;&nbsp;"
                     for name, colour in SEGMENT_COLOURS)
    return QLabel(items)


class NumberBox(QDoubleSpinBox):
    """A float as people write it: 0.05 and 2e-4, not 0.050000 and 0.000200."""

    def textFromValue(self, value: float) -> str:
        return f"{value:g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, position: int) -> object:
        from PySide6.QtGui import QValidator

        special = self.specialValueText()
        if special and text == special:
            return QValidator.State.Acceptable, text, position
        try:
            float(text)
        except ValueError:
            return QValidator.State.Intermediate, text, position
        return QValidator.State.Acceptable, text, position


class SettingsForm(QTabWidget):
    """A form built from TrainingConfig's field metadata (label, help, range, choices), one
    tab per group: every setting is in sight without a scroll area inside the page."""

    def __init__(self) -> None:
        super().__init__()
        self.editors: dict[str, QWidget] = {}
        groups: dict[str, QFormLayout] = {}
        for name, meta in field_metadata().items():
            group = meta.get("group", "Other")
            if group not in groups:
                tab = QWidget()
                groups[group] = QFormLayout(tab)
                self.addTab(tab, group)
            editor = self._editor(meta)
            editor.setToolTip(meta.get("help", ""))
            if name in ZERO_MEANS and isinstance(editor, QSpinBox | QDoubleSpinBox):
                editor.setSpecialValueText(ZERO_MEANS[name])  # shown at the minimum, 0
            self.editors[name] = editor
            groups[group].addRow(meta.get("label", name) + ":", editor)

    @staticmethod
    def _editor(meta: dict[str, Any]) -> QWidget:
        default = meta["default"]
        if "choices" in meta:
            box = QComboBox()
            box.addItems(list(meta["choices"]))
            return box
        if isinstance(default, bool):
            return QCheckBox()
        if isinstance(default, int):
            spin = QSpinBox()
            spin.setRange(int(meta.get("min", 0)), min(int(meta.get("max", INT_MAX)), INT_MAX))
            return spin
        if isinstance(default, float):
            double = NumberBox()
            double.setDecimals(8)  # precision kept; NumberBox shows only the digits it needs
            double.setRange(float(meta.get("min", 0.0)), float(meta.get("max", 1e6)))
            return double
        return QLabel(str(default))  # lists (target modules) are shown, edited as text later

    def load(self, config: TrainingConfig) -> None:
        for name, editor in self.editors.items():
            value = getattr(config, name)
            if isinstance(editor, QComboBox):
                editor.setCurrentText(str(value))
            elif isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QSpinBox | QDoubleSpinBox):
                editor.setValue(value)
            elif isinstance(editor, QLabel):
                editor.setText(value if isinstance(value, str) else ", ".join(value))

    def values(self, base: TrainingConfig) -> TrainingConfig:
        changes: dict[str, Any] = {}
        for name, editor in self.editors.items():
            if isinstance(editor, QComboBox):
                changes[name] = editor.currentText()
            elif isinstance(editor, QCheckBox):
                changes[name] = editor.isChecked()
            elif isinstance(editor, QSpinBox | QDoubleSpinBox):
                changes[name] = editor.value()
        return base.replace(**changes)


def matching_preset(config: TrainingConfig) -> str | None:
    """The preset whose settings these are, apart from those fitted to the computer."""
    for key in PRESETS:
        fitted = {name: getattr(config, name) for name in FITTED}
        if preset_config(key).replace(**fitted) == config:
            return key
    return None


class HardwarePage(StepPage):
    def __init__(self, step: Step, context: AppContext, project: ProjectSummary) -> None:
        super().__init__(step, context, project)
        self.training = TrainingService(context)
        self.hardware = HardwareService(context)
        self.tasks = TaskRunner(self)
        self.probe: ProbeEvent | None = None
        self.plan: TrainingPlan | None = None
        self._lengths: list[int] | None = None  # the examples' token counts, from the probe task
        self.config = self.training.config_for(project.id)

        self.findings = QLabel("Inspecting this computer…")
        self.findings.setWordWrap(True)
        refresh = QPushButton("Check again")
        refresh.clicked.connect(lambda: self.start_probe(refresh=True))
        # Where the run trains: the recommendation fits that computer's probe.
        self.train_on = QComboBox(objectName="trainOn")
        self.train_on.currentIndexChanged.connect(lambda _index: self._choose_machine())
        self._probed_for: str | None = None  # the machine (None: this computer) last probed
        self._probe_next: bool | None = None  # asked while a probe ran: its `refresh`
        choice = QHBoxLayout()
        choice.addWidget(QLabel("Train on:"))
        choice.addWidget(self.train_on, 1)
        choice.addWidget(refresh)
        machine = QGroupBox("Hardware")
        machine_layout = QVBoxLayout(machine)
        machine_layout.addLayout(choice)
        # Where the Train step trains, or why not on the machine chosen before (removed since).
        self.remote_note = QLabel(objectName="remoteNote", visible=False)
        self.remote_note.setWordWrap(True)
        self.remote_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        machine_layout.addWidget(self.remote_note)
        machine_layout.addWidget(self.findings)
        self._list_machines()

        self.bar = MemoryBar()
        self.recommendation = QLabel()
        self.recommendation.setWordWrap(True)
        self.duration = QLabel()
        self.duration.setWordWrap(True)
        self._refresh_speed = False
        self._timing: TrainingConfig | None = None  # the settings being timed
        self._time_when_shown = False
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        set_tone(self.warnings, "warning")
        fit = QGroupBox("Recommendation")
        fit_layout = QVBoxLayout(fit)
        for widget in (self.bar, _legend(), self.recommendation, self.duration,
                       self.warnings):
            fit_layout.addWidget(widget)

        self.preset = QComboBox()
        for key, preset in PRESETS.items():
            self.preset.addItem(preset.label, key)
            self.preset.setItemData(self.preset.count() - 1, preset.description,
                                    Qt.ItemDataRole.ToolTipRole)
        self.preset.setPlaceholderText("Choose a preset…")
        self.preset.setCurrentIndex(-1)
        self.preset.activated.connect(self._apply_preset)
        self.form = SettingsForm()
        self.form.load(self.config)
        self._show_preset()
        apply = QPushButton("Save settings")
        apply.clicked.connect(self._save_form)
        settings = QGroupBox("Training settings")
        settings_layout = QVBoxLayout(settings)
        row = QHBoxLayout()
        row.addWidget(QLabel("Preset:"))
        row.addWidget(self.preset, 1)
        row.addWidget(apply)
        settings_layout.addLayout(row)
        settings_layout.addWidget(self.form, 1)

        self.body.addWidget(machine)
        self.body.addWidget(fit)
        self.body.addWidget(settings, 1)

    def initializePage(self) -> None:
        """Probe (cached for a day) and count the examples (they may have changed since) when
        the person arrives here, not when the wizard is built."""
        self._list_machines()
        self.start_probe()

    def _list_machines(self) -> None:
        """This computer, then the machines of Settings → Machines (added or removed there
        meanwhile), with the project's choice selected."""
        location = train_location(self.context, self.project_id)
        self.train_on.blockSignals(True)
        self.train_on.clear()
        self.train_on.addItem("This computer", None)
        for machine in list_machines(self.context.home):
            self.train_on.addItem(f"{machine.name} ({machine.url})", machine.name)
        self.train_on.setCurrentIndex(max(0, self.train_on.findData(location.machine)))
        self.train_on.blockSignals(False)
        self._show_where(location.note)

    def _choose_machine(self) -> None:
        """The person's choice: kept for the project, and the machine probed."""
        choose_train_location(self.context, self.project_id, self.machine())
        self._show_where()
        self.start_probe()

    def _show_where(self, note: str = "") -> None:
        machine = self.machine()
        self.remote_note.setVisible(bool(machine or note))
        set_tone(self.remote_note, "warning" if note else None)
        if note:
            self.remote_note.setText(note)
        elif machine:
            self.remote_note.setText(
                f"The Train step trains on {machine}: it copies the dataset (and the base model, "
                f"once) there, shows the run's chart here, and copies the checkpoints and the "
                f"adapter back. In a terminal: finetuneflow train "
                f"{shlex.quote(self.project_name)} --on {machine}")

    def machine(self) -> str | None:
        """The machine chosen to train on; None: this computer."""
        name = self.train_on.currentData()
        return name if isinstance(name, str) else None

    def start_probe(self, refresh: bool = False) -> None:
        machine = self.machine()
        self.findings.setText(f"Connecting to {machine} and inspecting it…" if machine
                              else "Inspecting this computer…")
        if self.tasks.is_running("probe"):
            self._probe_next = refresh or bool(self._probe_next)  # when it ends: _after_probe
            return
        self._probed_for, self._probe_next = machine, None
        self._refresh_speed = refresh
        # The examples are counted here too: with many of them that takes seconds.
        self.tasks.start("probe", lambda _p, _c: (
            machine_probe(self.context.home, machine, refresh) if machine
            else self.hardware.probe(refresh=refresh),
            self.training.example_token_lengths(self.project_id)),
            on_success=self._show_probe, on_failure=self._show_failure,
            on_finished=self._after_probe)

    def _show_probe(self, probe_and_lengths: tuple[ProbeEvent, list[int]]) -> None:
        if self._probed_for != self.machine():
            return  # the person chose another computer meanwhile
        self.probe, self._lengths = probe_and_lengths
        self.findings.setText(describe_probe(self.probe))
        self.replan()

    def _show_failure(self, error: BaseException) -> None:
        if self._probed_for != self.machine():
            return
        self.findings.setText(describe(error, self.context.log_file)[0])
        # What fitted the computer chosen before does not hold for this one.
        self.probe = self.plan = None
        self.bar.clear()
        for label in (self.recommendation, self.duration, self.warnings):
            label.clear()
        self.completeChanged.emit()

    def _after_probe(self) -> None:
        """A probe asked for while one ran (another choice, Check again) starts now."""
        if self._probe_next is not None:
            self.start_probe(refresh=self._probe_next)

    def replan(self) -> None:
        if self.probe is None:
            return
        try:
            self.plan = self.training.plan(self.project_id, self.config, self.probe,
                                           self._lengths)
        except Exception as error:
            self.recommendation.setText(describe(error, self.context.log_file)[0])
            return
        rec = self.plan.recommendation
        self.bar.show_estimate(rec.estimate, rec.budget_bytes)
        self.recommendation.setText(f"<b>{rec.method.upper()}</b> on {rec.device.upper()} — "
                                    f"{rec.reason}")
        self.warnings.setText("\n".join(f"⚠ {w}" for w in self.plan.warnings))
        self.show_time()
        self.completeChanged.emit()

    # --- the time a run takes ------------------------------------------------------------------

    def show_time(self) -> None:
        """The measured estimate: from the cache at once, else timed in the trainer child in
        the background (a few seconds to a minute); until then the rough guess, so labelled."""
        if self.plan is None:
            return
        if not self.isVisible():  # built or initialised on the way to another page
            self._time_when_shown = True
            return
        if self.machine() is not None:  # the speed is timed on this computer only
            rough = self.plan.recommendation.estimated_seconds
            self.duration.setText(f"Expected time: roughly {format_duration(rough)} — a guess "
                                  f"from the model's size and {self.machine()}'s hardware.")
            return
        config, processes = self.plan.config, self._processes()
        cached = None if self._refresh_speed else self.training.cached_time(
            self.project_id, config, processes)
        if cached is not None:
            self.duration.setText(f"Expected time: {cached.summary()}.")
            return
        self.duration.setText("Expected time: timing a few training steps on this computer…")
        if self.tasks.is_running("speed"):
            self.tasks.cancel("speed")  # settings changed: the newest ones are timed next
            return
        refresh, self._refresh_speed = self._refresh_speed, False
        self._timing = config
        # Bound methods, not lambdas: a page closed meanwhile is not called back.
        self.tasks.start("speed", lambda _p, cancel: self.training.estimate_time(
            self.project_id, config, refresh=refresh, cancel=cancel, processes=processes),
            on_success=self._show_measured, on_failure=self._show_time_failure,
            on_finished=self._after_timing)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._time_when_shown:
            self._time_when_shown = False
            self.show_time()

    def hideEvent(self, event: QHideEvent) -> None:
        """Leaving the step stops a timing under way: its trainer child would compete with a
        training started next for the CPU and the GPU's memory. Back on the step, it runs
        again. A minimised window keeps timing."""
        super().hideEvent(event)
        if not event.spontaneous() and self.tasks.is_running("speed"):
            self._timing = None  # its end ("cancelled") is not shown
            self.tasks.cancel("speed")
            self._time_when_shown = True

    def _show_measured(self, estimate: RunEstimate | None) -> None:
        if self.plan is None or self.plan.config != self._timing:
            return  # timed for settings that have changed since
        if estimate is None:
            rough = self.plan.recommendation.estimated_seconds
            self.duration.setText(
                f"Expected time: roughly {format_duration(rough)} — a guess from the model's "
                "size; it is timed on this computer once the weights are downloaded.")
            return
        self.duration.setText(f"Expected time: {estimate.summary()}.")

    def _show_time_failure(self, error: BaseException) -> None:
        if self.plan is None or self.plan.config != self._timing:
            return  # cancelled because the settings changed
        self.duration.setText("Expected time: unknown — " +
                              describe(error, self.context.log_file)[0])

    def _after_timing(self) -> None:
        """Settings changed while a measurement ran: time the newest ones."""
        if self.plan is not None and self.plan.config != self._timing:
            self.show_time()

    def _processes(self) -> int:
        return max(1, len(self.probe.gpus)) if self.probe is not None else 1

    def _apply_preset(self, index: int) -> None:
        self.config = preset_config(self.preset.itemData(index))
        self._store(self.config)

    def _show_preset(self) -> None:
        """The preset the settings are (after fitting them to this computer), or none."""
        self.preset.setCurrentIndex(self.preset.findData(matching_preset(self.config)))

    def _save_form(self) -> None:
        try:
            self._store(self.form.values(self.config))
        except Exception as error:
            self.recommendation.setText(describe(error, self.context.log_file)[0])

    def _store(self, config: TrainingConfig) -> None:
        self.training.save_config(self.project_id, config)
        self.config = config
        self.replan()
        if self.plan is not None:  # keep what fits this machine
            self.config = self.plan.config
            self.training.save_config(self.project_id, self.config)
        self.form.load(self.config)
        self._show_preset()

    def isComplete(self) -> bool:
        return self.plan is not None
