"""What an export says about its run: metrics.json, report.md and the loss curve (SVG).

report.md is for a person who was not there: what was trained on what, how it went, how to use
the result, and what the model answers before and after. The loss curve is an SVG written by
hand, so the CLI draws it without a GUI or a plotting library.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any
from xml.sax.saxutils import escape

from finetuneflow.core.child_protocol import EARLY_STOPPING
from finetuneflow.core.evaluation.results import Evaluation, EvaluationSummary, QuestionResult
from finetuneflow.core.evaluation.stats import percent
from finetuneflow.core.training.config import METHOD_LABELS, field_metadata
from finetuneflow.core.units import format_bytes, format_duration

LOSS_CURVE = "loss_curve.svg"
EXAMPLE_CHARS = 1500  # a training example in the report is cut after this many characters
TRAIN_COLOUR, EVAL_COLOUR = "#1f77b4", "#e8710a"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Message = dict[str, str]


# --- metrics.json -----------------------------------------------------------------------------

def export_metrics(trainer_metrics: dict[str, Any], run_message: str = "") -> dict[str, Any]:
    """The export's metrics.json from the trainer's: no local paths, early stopping spelt out."""
    config = trainer_metrics.get("config") or {}
    evals = [e["eval_loss"] for e in trainer_metrics.get("eval_history", [])
             if _finite(e.get("eval_loss"))]
    reason = trainer_metrics.get("reason")
    best = trainer_metrics.get("best_checkpoint")
    kept = ("run_id", "device", "method", "loss_on", "reason", "steps", "total_steps",
            "trainable_params", "total_params", "final_eval_loss", "perplexity", "train_loss",
            "runtime_s", "tokens_seen", "tokens_per_second", "peak_memory_bytes")
    return {
        **{key: trainer_metrics.get(key) for key in kept},
        "epochs": _epochs_trained(trainer_metrics),
        "train_examples": trainer_metrics.get("train_examples"),
        "eval_examples": trainer_metrics.get("eval_examples"),
        "best_eval_loss": min(evals) if evals else None,
        "early_stopping": {
            "enabled": bool(config.get("early_stopping_patience")) and bool(evals),
            "patience": config.get("early_stopping_patience"),
            "threshold": config.get("early_stopping_threshold"),
            "divergence_factor": config.get("divergence_factor"),
            "triggered": reason == EARLY_STOPPING,
            "stopped_at_step": trainer_metrics.get("steps") if reason == EARLY_STOPPING
            else None,
            "best_checkpoint": PurePath(best).name if best else None,
            "message": run_message,
        },
        "loss_history": trainer_metrics.get("loss_history", []),
        "eval_history": trainer_metrics.get("eval_history", []),
    }


def _epochs_trained(trainer_metrics: dict[str, Any]) -> float | None:
    """The epochs the run went through: the trainer's count, or (metrics of older runs) the
    last logged epoch. Never the setting, which max steps overrides."""
    epochs = trainer_metrics.get("epochs")
    if isinstance(epochs, int | float) and _finite(epochs):
        return float(epochs)
    logged = [entry.get("epoch") for entry in (*trainer_metrics.get("loss_history", []),
                                              *trainer_metrics.get("eval_history", []))]
    return max((float(e) for e in logged if isinstance(e, int | float) and _finite(e)),
               default=None)


def token_length_stats(lengths: list[int]) -> dict[str, Any]:
    if not lengths:
        return {"count": 0}
    ordered = sorted(lengths)
    return {"count": len(ordered), "min": ordered[0], "median": statistics.median(ordered),
            "mean": round(statistics.fmean(ordered), 1),
            "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
            "max": ordered[-1]}


# --- report.md --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One held-out prompt: the reference answer and the two models' answers."""

    prompt: str
    reference: str
    base: str
    finetuned: str


@dataclass(frozen=True)
class OllamaInfo:
    model_name: str
    command: str
    importable: bool
    note: str
    chat_format: str | None  # the family's label; None when it was not recognised


@dataclass(frozen=True)
class GgufInfo:
    file: str  # the path inside the export folder, gguf/model-q8_0.gguf
    quantisation: str  # f16, q8_0, q4_k_m
    bytes: int
    kind: str = "model"  # or "adapter": a LoRA GGUF applied on the base model's GGUF


@dataclass(frozen=True)
class ReportInput:
    project: str
    run_id: int
    base_model: str  # the Hub id, or the folder's path when the base was a local folder
    revision: str | None
    exported_at: str
    task_type: str
    system_prompt: str
    metrics: dict[str, Any]  # export_metrics()
    config: dict[str, Any]  # the training settings
    dataset: dict[str, Any]  # the dataset statistics of config.json
    examples: list[list[Message]]
    samples: list[Sample]
    samples_held_out: bool  # False: no evaluation set, the prompts come from training
    sample_max_tokens: int
    packages: dict[str, str]
    ollama: OllamaInfo | None = None  # None: no merged model
    files: list[str] = field(default_factory=list)
    base_local: bool = False  # the base was a local folder, not a Hub model
    gguf: list[GgufInfo] = field(default_factory=list)
    evaluation: Evaluation | None = None  # the run's latest evaluation, when it has one


def render_report(data: ReportInput) -> str:
    parts = [_summary(data), evaluation_section(data.evaluation), _usage(data),
             _curve_section(data), _dataset_section(data),
             _config_section(data), _examples_section(data), _samples_section(data),
             _reproduce_section(data)]
    return "\n\n".join(part.rstrip() for part in parts if part) + "\n"


def _summary(data: ReportInput) -> str:
    m = data.metrics
    revision = f" (revision `{data.revision[:12]}`)" if data.revision else ""
    method = METHOD_LABELS.get(str(m.get("method")), str(m.get("method") or "LoRA"))
    rows = [
        ("Base model", f"`{data.base_model}`{revision}"
                       + (" (a local folder, not a Hub id)" if data.base_local else "")),
        ("Method", f"{method}, rank {data.config.get('lora_r')}, alpha "
                   f"{data.config.get('lora_alpha')}; {_count(m.get('trainable_params'))} of "
                   f"{_count(m.get('total_params'))} parameters trained"),
        ("Task", f"{data.task_type}"),
        ("Examples", f"{_count(_examples(data, 'train_examples'))} for training, "
                     f"{_count(_examples(data, 'eval_examples'))} held out for evaluation"),
        ("Epochs", _epochs_text(data)),
        ("Steps", f"{m.get('steps')} of {m.get('total_steps')} ({_ending(m)})"),
        ("Final eval loss", f"{_number(m.get('final_eval_loss'))} "
                            f"(perplexity {_number(m.get('perplexity'), 2)})"),
        ("Final train loss", _number(m.get("train_loss"))),
        ("Runtime", f"{format_duration(m.get('runtime_s'))} on {m.get('device') or 'unknown'}"),
        ("Tokens seen", f"{_count(m.get('tokens_seen'))} "
                        f"({_number(m.get('tokens_per_second'), 1)} tokens/s)"),
        ("Peak memory", format_bytes(m["peak_memory_bytes"]) if m.get("peak_memory_bytes")
         else "not measured"),
    ]
    return "\n".join([
        f"# {data.project}: fine-tuned {data.base_model}", "",
        f"Run {data.run_id}, exported {data.exported_at} by FineTuneFlow. The numbers come "
        "from metrics.json; config.json has everything needed to train this run again.", "",
        _table(("Summary", ""), rows)])


def _examples(data: ReportInput, key: str) -> Any:
    """How many examples the run trained on (the trainer counted them), else the dataset
    files' count (metrics of older runs; the files may have been rewritten since)."""
    counted = data.metrics.get(key)
    return counted if isinstance(counted, int) else data.dataset.get(key)


def _epochs_text(data: ReportInput) -> str:
    epochs = data.metrics.get("epochs")
    trained = f"{epochs:.1f}" if _finite(epochs) else "n/a"
    if _limited_by_steps(data.config):
        return (f"{trained} (max steps {data.config.get('max_steps')} set the length, not the "
                f"Epochs setting of {data.config.get('num_epochs')})")
    return trained


def _limited_by_steps(config: dict[str, Any]) -> bool:
    max_steps = config.get("max_steps")
    return isinstance(max_steps, int) and max_steps > 0


def _ending(metrics: dict[str, Any]) -> str:
    reason = metrics.get("reason")
    early = metrics.get("early_stopping") or {}
    if reason == EARLY_STOPPING:
        return f"stopped early: {early.get('message') or 'the eval loss stopped improving'}"
    if reason == "divergence":
        return "stopped: the loss diverged"
    return "completed"


def _usage(data: ReportInput) -> str:
    lines = ["## Use it", "", "### The adapter (`adapter/`), with PEFT", "",
             "```python", "from peft import PeftModel",
             "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             f'base = AutoModelForCausalLM.from_pretrained("{data.base_model}")',
             'model = PeftModel.from_pretrained(base, "adapter")',
             'tokenizer = AutoTokenizer.from_pretrained("adapter")  # with the chat template',
             "```"]
    if data.base_local:
        lines += ["", "The base model is a local folder, so `adapter/adapter_config.json` names "
                  "its path as `base_model_name_or_path`. On another computer, use where the "
                  "base model is there (or its Hub id) in the code above and in that file."]
    if data.ollama is None:
        return "\n".join(lines)
    lines += ["", "### The merged model (`merged/`)", "",
              "A plain transformers model (the adapter folded into the base weights): "
              '`AutoModelForCausalLM.from_pretrained("merged")`.']
    if data.metrics.get("method") == "qlora":
        lines[-1] += (" The adapter was trained on the 4-bit base and is folded into the "
                      "16-bit weights here, as usual for QLoRA; answers can differ slightly "
                      "from the 4-bit model's.")
    lines += _gguf_usage(data.gguf)
    models = any(entry.kind == "model" for entry in data.gguf)
    lines += _ollama_usage(data.ollama, "gguf" if models else "merged")
    return "\n".join(lines)


def _gguf_usage(files: list[GgufInfo]) -> list[str]:
    if not files:
        return []
    rows = [(f"`{entry.file}`", entry.quantisation.upper()
             + (" LoRA adapter" if entry.kind == "adapter" else ""), format_bytes(entry.bytes))
            for entry in files]
    lines = ["", "### GGUF (`gguf/`): LM Studio, llama.cpp, Jan, GPT4All", "",
             _table(("File", "Quantisation", "Size"), rows)]
    if models := [entry.file for entry in files if entry.kind == "model"]:
        first = models[0]
        lines += ["", "Each model file holds the weights, the tokenizer and the chat template, "
                  "so these programs format the chat as in training. LM Studio: `lms import "
                  f"{first}` (or put it in ~/.lmstudio/models/PUBLISHER/MODEL/). llama.cpp: "
                  f"`llama-server -m {first}` or `llama-cli -m {first} -cnv`."]
    return lines + _adapter_usage(files)


def _adapter_usage(files: list[GgufInfo]) -> list[str]:
    adapter = next((entry.file for entry in files if entry.kind == "adapter"), None)
    if adapter is None:
        return []
    return ["", f"`{adapter}` is the LoRA adapter alone: it needs the base model it was trained "
            "on as a GGUF (llama.cpp's `convert_hf_to_gguf.py --outtype f16` makes it), named "
            "in the FROM line of `gguf/Modelfile.adapter`. llama.cpp: `llama-cli -m BASE.gguf "
            f"--lora {adapter}`; Ollama: `cd gguf && ollama create NAME -f Modelfile.adapter`."]


def _ollama_usage(ollama: OllamaInfo | None, folder: str) -> list[str]:
    if ollama is None:
        return []
    lines = ["", "### In Ollama", ""]
    if folder == "merged" and not ollama.importable:
        lines += [f"**Note:** {ollama.note}", ""]
    lines += ["```sh", f"cd {folder}", ollama.command, f"ollama run {ollama.model_name}", "```",
              ""]
    lines.append("The Modelfile in gguf/ points at the smallest GGUF file; change its FROM line "
                 "to use another. " if folder == "gguf" else
                 "Add `--quantize q4_K_M` to `ollama create` for a model about a quarter the "
                 "size. ")
    if ollama.chat_format:
        lines[-1] += (f"The Modelfile states the chat format ({ollama.chat_format}), its stop "
                      "strings and the task's system prompt.")
    else:
        lines[-1] += ("The chat format was not recognised, so the Modelfile leaves the "
                      "template to Ollama: check that its first answers look right.")
    return lines


def _curve_section(data: ReportInput) -> str:
    history = data.metrics.get("eval_history") or []
    rows = [(str(e.get("step")), _number(e.get("eval_loss"))) for e in _last_per_step(history)]
    text = ["## Loss curve", "", f"![Training and evaluation loss]({LOSS_CURVE})"]
    if rows:
        text += ["", _table(("Step", "Eval loss"), rows)]
    return "\n".join(text)


def _dataset_section(data: ReportInput) -> str:
    stats = data.dataset
    rejected = stats.get("rejected_by_reason") or {}
    lengths = stats.get("token_lengths") or {}
    lines = ["## Dataset", "",
             f"{_count(_examples(data, 'train_examples'))} training and "
             f"{_count(_examples(data, 'eval_examples'))} evaluation examples; "
             f"{_count(stats.get('rejected', 0))} rejected."]
    if rejected:
        rows = sorted(rejected.items(), key=lambda item: (-item[1], item[0]))
        lines += ["", _table(("Rejected because", "Examples"), [(r, str(n)) for r, n in rows])]
    if lengths.get("count"):
        lines += ["", "Length in tokens (the whole chat in the model's template): "
                  f"min {lengths['min']}, median {lengths['median']}, mean {lengths['mean']}, "
                  f"95th percentile {lengths['p95']}, max {lengths['max']} "
                  f"(max sequence length {data.config.get('max_seq_length')})."]
    return "\n".join(lines)


def _config_section(data: ReportInput) -> str:
    labels = field_metadata()
    unused = {"num_epochs"} if _limited_by_steps(data.config) else set()
    rows = [(str(labels.get(key, {}).get("label", key)),
             f"`{value}`" + (" (not used: max steps is set)" if key in unused else ""),
             f"`{key}`") for key, value in data.config.items()]
    return "\n".join(["## Training configuration", "",
                      _table(("Setting", "Value", "Key"), rows)])


def _examples_section(data: ReportInput) -> str:
    if not data.examples:
        return ""
    lines = ["## Example training pairs"]
    for number, messages in enumerate(data.examples, start=1):
        lines += ["", f"### Example {number}"]
        for message in messages:
            if message["role"] == "system":
                continue
            lines += ["", f"**{message['role'].capitalize()}**", "",
                      _fenced(_cut(message["content"], EXAMPLE_CHARS))]
    return "\n".join(lines)


def _samples_section(data: ReportInput) -> str:
    if not data.samples:
        return ""
    source = ("held-out evaluation prompts" if data.samples_held_out
              else "training prompts (there is no evaluation set)")
    lines = ["## Before and after", "",
             f"Answers to {len(data.samples)} {source}: the reference from the dataset, the base "
             "model's answer and the fine-tuned model's, each given the chat as the dataset "
             f"has it (system prompt included), with greedy decoding (at most "
             f"{data.sample_max_tokens} new tokens)."]
    for number, sample in enumerate(data.samples, start=1):
        lines += ["", f"### Prompt {number}", "", _fenced(sample.prompt)]
        for label, text in (("Reference", sample.reference), ("Base model", sample.base),
                            ("Fine-tuned", sample.finetuned)):
            lines += ["", f"**{label}**", "", _fenced(text or "(no answer)")]
    return "\n".join(lines)


# --- the evaluation ----------------------------------------------------------------------------

LOOK_FIRST = 10  # questions the report lists, those needing a look first
QUESTION_CHARS = 300


def evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
    """The read model as JSON (metrics.json, `evaluate --json`): dataclasses.asdict, with
    the win rate and its interval beside the tally's counts."""
    summary = asdict(evaluation.summary)
    tally = evaluation.summary.tally
    if tally is not None and summary["tally"] is not None:
        interval = tally.interval
        summary["tally"] |= {"judged": tally.judged, "rate": tally.rate,
                             "interval_low": interval.low if interval else None,
                             "interval_high": interval.high if interval else None}
    return {"summary": summary, "questions": [asdict(row) for row in evaluation.rows]}


def score_rows(summary: EvaluationSummary) -> list[tuple[str, str, str]]:
    """(measure, base model, fine-tuned model) as every surface prints them."""
    return [
        ("Eval loss", _number(summary.base_eval_loss), _number(summary.tuned_eval_loss)),
        ("Perplexity", _number(summary.base_perplexity, 2), _number(summary.tuned_perplexity, 2)),
        ("Token F1", _number(summary.base_f1, 3), _number(summary.tuned_f1, 3)),
        ("ROUGE-L", _number(summary.base_rouge_l, 3), _number(summary.tuned_rouge_l, 3)),
        ("Grounded answers", _share(summary.base_grounded_share),
         _share(summary.tuned_grounded_share)),
    ]


def outcome_label(row: QuestionResult) -> str:
    return {"win": "fine-tuned better", "tie": "tie", "loss": "base better",
            None: "not judged"}[row.outcome]


def evaluation_section(evaluation: Evaluation | None) -> str:
    """The headline, the scores per model and the questions that need a look first."""
    if evaluation is None:
        return ""
    summary = evaluation.summary
    lines = ["## Evaluation", "", f"**{summary.headline}**", "",
             f"{summary.answered} of {summary.questions} held-out questions answered by both "
             f"models (evaluation {summary.status}). The judge is the project's LLM, asked "
             "twice per question with the answers in both orders; a tie counts half.", "",
             _table(("Measure", "Base model", "Fine-tuned"), score_rows(summary))]
    if summary.judge_requests:
        lines += ["", f"The judge used {summary.judge_requests:,} requests and "
                      f"{summary.judge_tokens:,} tokens."]
    if summary.message:
        lines += ["", f"Note: {summary.message}"]
    rows = evaluation.needing_a_look()[:LOOK_FIRST]
    if rows:
        lines += ["", f"### Questions to look at first ({len(rows)} of {len(evaluation.rows)})",
                  "", _table(("#", "Question", "Result", "Why", "Base model", "Fine-tuned"), [
                      (str(row.question_id), _cut(row.question, QUESTION_CHARS),
                       outcome_label(row), row.reason or "",
                       _cut(row.base_answer or "(no answer)", QUESTION_CHARS),
                       _cut(row.tuned_answer or "(no answer)", QUESTION_CHARS))
                      for row in rows])]
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return percent(value) if value is not None else "n/a"


def _reproduce_section(data: ReportInput) -> str:
    lines = ["## Reproduce", "",
             "`config.json` holds the base model, the task and its prompts, the generation "
             "settings, the training settings, the dataset statistics, the seeds and these "
             "package versions:", "",
             _table(("Package", "Version"), sorted(data.packages.items()))]
    if data.system_prompt:
        lines += ["", "System prompt:", "", _fenced(data.system_prompt)]
    if data.files:
        lines += ["", "## Files", ""] + [f"- `{name}`" for name in data.files]
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    def row(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ")
                                 for c in cells) + " |"

    return "\n".join([row(header), "|" + "---|" * len(header)] + [row(r) for r in rows])


def _fenced(text: str) -> str:
    """A code block no text can close early: the fence is longer than any backtick run.
    Control characters (a small model's answers can hold any) are left out."""
    text = _CONTROL.sub("", text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "n/a"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "n/a"


def _last_per_step(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per step (the trainer's final evaluation repeats the last step)."""
    by_step = {entry.get("step"): entry for entry in history}
    return [by_step[step] for step in sorted(by_step, key=lambda s: s or 0)]


# --- the loss curve ---------------------------------------------------------------------------

WIDTH, HEIGHT = 720, 380
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 44, 52


def loss_curve_svg(loss_history: list[dict[str, Any]],
                   eval_history: list[dict[str, Any]]) -> str:
    train = [(e["step"], e["loss"]) for e in loss_history if _finite(e.get("loss"))]
    evals = [(e["step"], e["eval_loss"]) for e in _last_per_step(eval_history)
             if _finite(e.get("eval_loss"))]
    body = _plot(train, evals) if train or evals else [
        _text(WIDTH / 2, HEIGHT / 2, "No loss values were logged.", anchor="middle")]
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        _text(LEFT, 24, "Loss", size=15),
        *body, "</svg>", ""])


def _plot(train: list[tuple[float, float]], evals: list[tuple[float, float]]) -> list[str]:
    points = train + evals
    x_ticks = _ticks(0, max(step for step, _ in points) or 1)
    y_ticks = _ticks(min(v for _, v in points), max(v for _, v in points))
    scale = _Scale(x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1])
    parts = []
    for value in y_ticks:
        y = scale.y(value)
        parts += [f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
                  'stroke="#e0e0e0"/>', _text(LEFT - 8, y + 4, _tick_label(value), "end")]
    for value in x_ticks:
        x = scale.x(value)
        parts.append(_text(x, HEIGHT - BOTTOM + 18, _tick_label(value), "middle"))
    parts += [
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#444444"/>',
        _text((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 12, "step", "middle")]
    if train:
        parts.append(_polyline(train, scale, TRAIN_COLOUR))
    if evals:
        parts.append(_polyline(evals, scale, EVAL_COLOUR, dashed=True))
        parts += [f'<circle cx="{scale.x(s):.1f}" cy="{scale.y(v):.1f}" r="3" '
                  f'fill="{EVAL_COLOUR}"/>' for s, v in evals]
    return parts + _legend(bool(train), bool(evals))


class _Scale:
    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self._x0, self._x1, self._y0, self._y1 = x0, x1 or 1, y0, y1

    def x(self, value: float) -> float:
        return LEFT + (value - self._x0) / (self._x1 - self._x0) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        span = (self._y1 - self._y0) or 1
        return HEIGHT - BOTTOM - (value - self._y0) / span * (HEIGHT - TOP - BOTTOM)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if high <= low:
        low, high = low - (abs(low) * 0.1 or 1), high + (abs(high) * 0.1 or 1)
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = [first]
    while ticks[-1] < high - 1e-12:
        ticks.append(ticks[-1] + step)
    return [round(t, 10) for t in ticks]


def _tick_label(value: float) -> str:
    return f"{value:g}"


def _polyline(points: list[tuple[float, float]], scale: _Scale, colour: str,
              dashed: bool = False) -> str:
    coordinates = " ".join(f"{scale.x(s):.1f},{scale.y(v):.1f}" for s, v in points)
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    return (f'<polyline points="{coordinates}" fill="none" stroke="{colour}" '
            f'stroke-width="2"{dash}/>')


def _legend(train: bool, evals: bool) -> list[str]:
    entries = [(label, colour) for label, colour, shown in (
        ("training loss", TRAIN_COLOUR, train), ("evaluation loss", EVAL_COLOUR, evals)) if shown]
    parts = []
    for index, (label, colour) in enumerate(entries):
        x = WIDTH - RIGHT - 150 * (len(entries) - index)
        parts += [f'<line x1="{x}" y1="20" x2="{x + 24}" y2="20" stroke="{colour}" '
                  'stroke-width="2"/>', _text(x + 30, 24, label)]
    return parts


def _text(x: float, y: float, text: str, anchor: str = "start", size: int | None = None) -> str:
    font = f' font-size="{size}"' if size else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{font} '
            f'fill="#222222">{escape(text)}</text>')
