"""What the fine-tuned model should learn, and how to ask an LLM for examples of it.

A task type (qa, instructions, summary, extraction, custom) fixes three things: the system prompt
the fine-tuned model will carry (editable), the generation prompt (a template file under
resources/prompts/<task>.txt, editable) and the JSON Schema of one generated example, which both
goes into the prompt (Ollama Cloud ignores `format`) and is used to validate the answer.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from functools import cache
from typing import Any

from finetuneflow.core.resources import resource_path

Message = dict[str, str]
Item = dict[str, Any]

MAX_EXAMPLES_PER_CHUNK = 20
DIFFICULTIES = ("mixed", "easy", "medium", "hard")
GENERATOR_SYSTEM_PROMPT = (
    "You create high-quality training data for fine-tuning language models. You follow the "
    "requested format exactly and answer with JSON only."
)
TEMPLATE_PLACEHOLDERS = (
    "n", "chunk", "schema", "language", "difficulty", "style", "fields", "instruction", "few_shot",
)


class TaskType(StrEnum):
    QA = "qa"
    INSTRUCTIONS = "instructions"
    SUMMARY = "summary"
    EXTRACTION = "extraction"
    CUSTOM = "custom"


def _text(description: str, min_length: int = 1) -> dict[str, Any]:
    # Descriptions reach the model with the schema; the validator ignores them.
    return {"type": "string", "minLength": min_length, "description": description}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


@dataclass(frozen=True)
class TaskSpec:
    """The fixed part of a task type."""

    type: TaskType
    title: str
    description: str
    default_system_prompt: str
    item_schema: dict[str, Any]
    to_turns: Callable[[Item, str], tuple[str, str]]  # (item, chunk) -> (user, assistant)
    dedup_text: Callable[[Item], str]  # the part that makes two examples "the same"
    grounding_field: str | None = None  # a verbatim quote from the chunk to check
    uses_difficulty: bool = False


def _with_text(request: str, chunk: str) -> str:
    return f"{request.strip()}\n\n{chunk}"


def _instruction_user(item: Item) -> str:
    extra = str(item.get("input") or "").strip()
    return f"{item['instruction'].strip()}\n\n{extra}" if extra else item["instruction"].strip()


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


TASK_SPECS: dict[TaskType, TaskSpec] = {
    TaskType.QA: TaskSpec(
        type=TaskType.QA,
        title="Questions and answers",
        description="Answer questions about the knowledge in your documents.",
        default_system_prompt=(
            "You are a knowledgeable assistant. Answer questions accurately and concisely, "
            "using what you know from the reference documents."
        ),
        item_schema=_object(
            {
                "question": _text("a self-contained question answerable from the passage"),
                "answer": _text("the correct, complete answer, from the passage only"),
                "quote": _text("a short sentence or phrase copied word for word from the passage"),
            },
            ["question", "answer", "quote"],
        ),
        to_turns=lambda item, chunk: (item["question"].strip(), item["answer"].strip()),
        dedup_text=lambda item: item["question"],
        grounding_field="quote",
        uses_difficulty=True,
    ),
    TaskType.INSTRUCTIONS: TaskSpec(
        type=TaskType.INSTRUCTIONS,
        title="Instructions",
        description="Follow instructions in the domain of your documents.",
        default_system_prompt=(
            "You are a helpful expert assistant. Follow the user's instructions carefully "
            "and accurately."
        ),
        item_schema=_object(
            {
                "instruction": _text("a realistic request in the passage's domain"),
                "input": _text("material the instruction works on, or an empty string", 0),
                "response": _text("the ideal response"),
            },
            ["instruction", "response"],
        ),
        to_turns=lambda item, chunk: (_instruction_user(item), item["response"].strip()),
        dedup_text=_instruction_user,
        uses_difficulty=True,
    ),
    TaskType.SUMMARY: TaskSpec(
        type=TaskType.SUMMARY,
        title="Summaries",
        description="Summarise texts like yours, in the form asked for.",
        default_system_prompt=(
            "You summarise texts accurately and concisely, in exactly the form requested."
        ),
        item_schema=_object(
            {
                "instruction": _text("a request to summarise the text that follows it"),
                "summary": _text("the summary, exactly as the instruction asks"),
            },
            ["instruction", "summary"],
        ),
        to_turns=lambda item, chunk: (
            _with_text(item["instruction"], chunk),
            item["summary"].strip(),
        ),
        # Every example of a chunk carries the same text: what differs is the request + summary.
        dedup_text=lambda item: f"{item['instruction']}\n{item['summary']}",
    ),
    TaskType.EXTRACTION: TaskSpec(
        type=TaskType.EXTRACTION,
        title="Extraction to JSON",
        description="Pull structured data (JSON) out of texts like yours.",
        default_system_prompt=(
            "You extract the requested information from the text you are given and reply with "
            "valid JSON only."
        ),
        item_schema=_object(
            {
                "instruction": _text("what to extract from the text that follows, and the keys"),
                "output": {"type": ["object", "array"], "description": "the extracted data"},
            },
            ["instruction", "output"],
        ),
        to_turns=lambda item, chunk: (
            _with_text(item["instruction"], chunk),
            _json_text(item["output"]),
        ),
        dedup_text=lambda item: f"{item['instruction']}\n{_json_text(item['output'])}",
    ),
    TaskType.CUSTOM: TaskSpec(
        type=TaskType.CUSTOM,
        title="Custom",
        description="Your own instruction, with optional examples of what you want.",
        default_system_prompt="You are a helpful assistant.",
        item_schema=_object(
            {"input": _text("what the user sends"), "output": _text("the ideal reply")},
            ["input", "output"],
        ),
        to_turns=lambda item, chunk: (item["input"].strip(), item["output"].strip()),
        dedup_text=lambda item: item["input"],
        uses_difficulty=True,
    ),
}


@dataclass(frozen=True)
class TaskSettings:
    """The person's choices for a task; empty strings mean "the default"."""

    type: TaskType = TaskType.QA
    examples_per_chunk: int = 3
    language: str = ""  # empty: the document's own language
    difficulty: str = "mixed"  # qa, instructions, custom
    style: str = ""  # free text, e.g. "formal", "short answers", "for beginners"
    system_prompt: str = ""  # empty: the task's default
    prompt_template: str = ""  # empty: resources/prompts/<task>.txt
    instruction: str = ""  # custom: what the examples must teach
    few_shot: tuple[tuple[str, str], ...] = ()  # custom: (input, output) examples
    fields: tuple[str, ...] = field(default=())  # extraction: the keys wanted in the output

    def problems(self) -> list[str]:
        found: list[str] = []
        if not 1 <= self.examples_per_chunk <= MAX_EXAMPLES_PER_CHUNK:
            found.append(
                f"Examples per chunk must be between 1 and {MAX_EXAMPLES_PER_CHUNK}."
            )
        if self.difficulty not in DIFFICULTIES:
            found.append(f"Difficulty must be one of {', '.join(DIFFICULTIES)}.")
        if self.type is TaskType.CUSTOM and not self.instruction.strip():
            found.append("A custom task needs an instruction: say what the examples must teach.")
        if self.prompt_template:
            found += template_problems(self.prompt_template)
        return found

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type.value
        data["few_shot"] = [list(pair) for pair in self.few_shot]
        data["fields"] = list(self.fields)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "type" in values:
            values["type"] = TaskType(values["type"])
        values["few_shot"] = tuple(tuple(pair) for pair in values.get("few_shot", ()))
        values["fields"] = tuple(values.get("fields", ()))
        return cls(**values)


# -- templates ------------------------------------------------------------------------------


@cache
def load_prompt_template(task_type: TaskType | str) -> str:
    path = resource_path("prompts", f"{TaskType(task_type).value}.txt")
    return path.read_text(encoding="utf-8")


def template_problems(template: str) -> list[str]:
    """Placeholders a template uses that do not exist (a typo would reach the LLM verbatim)."""
    parsed = string.Template(template)
    if not parsed.is_valid():
        return ["The prompt template has a stray '$' (write $$ for a dollar sign)."]
    names = parsed.get_identifiers()
    unknown = sorted(set(names) - set(TEMPLATE_PLACEHOLDERS))
    problems = [f"Unknown placeholder ${name} in the prompt template." for name in unknown]
    if "chunk" not in names:
        problems.append("The prompt template must contain $chunk (where the passage goes).")
    return problems


# -- the task as the engine uses it ---------------------------------------------------------


class Task:
    """A task type with the person's settings: builds prompts and turns answers into examples."""

    def __init__(self, settings: TaskSettings | None = None) -> None:
        self.settings = settings or TaskSettings()
        if problems := self.settings.problems():
            raise ValueError(" ".join(problems))
        self.spec = TASK_SPECS[self.settings.type]
        self.template = self.settings.prompt_template or load_prompt_template(self.spec.type)

    def __repr__(self) -> str:
        return f"Task({self.spec.type.value}, {self.settings.examples_per_chunk} per chunk)"

    @property
    def type(self) -> TaskType:
        return self.spec.type

    @property
    def system_prompt(self) -> str:
        return self.settings.system_prompt.strip() or self.spec.default_system_prompt

    @property
    def item_schema(self) -> dict[str, Any]:
        return self.spec.item_schema

    def response_schema(self) -> dict[str, Any]:
        """What one answer holds: {"examples": [item, ...]} (an object root suits every server)."""
        examples = {"type": "array", "items": self.item_schema, "minItems": 1}
        return {"type": "object", "properties": {"examples": examples}, "required": ["examples"]}

    def render_prompt(self, chunk_text: str, n: int | None = None) -> str:
        values = self._placeholder_values(chunk_text, n or self.settings.examples_per_chunk)
        return string.Template(self.template).substitute(values)

    def generation_messages(self, chunk_text: str, n: int | None = None) -> list[Message]:
        return [
            {"role": "system", "content": GENERATOR_SYSTEM_PROMPT},
            {"role": "user", "content": self.render_prompt(chunk_text, n)},
        ]

    def example_messages(self, item: Item, chunk_text: str) -> list[Message]:
        """A validated item as the chat the fine-tuned model will be trained on."""
        user, assistant = self.spec.to_turns(item, chunk_text)
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ]

    def dedup_text(self, item: Item) -> str:
        return self.spec.dedup_text(item)

    def dedup_text_of_messages(self, messages: list[Message]) -> str:
        """The same text from a stored example (to seed a Deduplicator when a run resumes)."""
        user = next((m["content"] for m in messages if m.get("role") == "user"), "")
        reply = next((m["content"] for m in messages if m.get("role") == "assistant"), "")
        if self.spec.type in (TaskType.SUMMARY, TaskType.EXTRACTION):
            request = user.split("\n\n", 1)[0]  # the chunk follows the request
            return f"{request}\n{reply}"
        return user

    def grounding_quote(self, item: Item) -> str | None:
        name = self.spec.grounding_field
        value = item.get(name) if name else None
        return value if isinstance(value, str) else None

    def _placeholder_values(self, chunk_text: str, n: int) -> dict[str, str]:
        s = self.settings
        return {
            "n": str(n),
            "chunk": chunk_text.strip(),
            "schema": json.dumps(self.item_schema, ensure_ascii=False),
            "language": _language_rule(s.language),
            "difficulty": _difficulty_rule(s.difficulty),
            "style": f"- Style: {s.style.strip()}" if s.style.strip() else "",
            "fields": _fields_rule(s.fields),
            "instruction": s.instruction.strip(),
            "few_shot": _few_shot_block(s.few_shot),
        }


def _language_rule(language: str) -> str:
    if language.strip():
        return f"Write everything in {language.strip()}."
    return "Write everything in the same language as the passage."


DIFFICULTY_RULES = {
    "mixed": "Mix simple items (one fact) with harder ones that combine facts or need reasoning.",
    "easy": "Keep every item simple: one clear fact each.",
    "medium": "Make every item need a clear understanding of the passage, not just one word.",
    "hard": "Make every item demanding: it needs reasoning over several facts of the passage.",
}


def _difficulty_rule(difficulty: str) -> str:
    return DIFFICULTY_RULES.get(difficulty, DIFFICULTY_RULES["mixed"])


def _fields_rule(wanted: tuple[str, ...]) -> str:
    if wanted:
        return f'Use these keys in "output" where they apply: {", ".join(wanted)}.'
    return 'Choose short, descriptive snake_case keys for "output".'


def _few_shot_block(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    shown = [{"input": given, "output": wanted} for given, wanted in pairs]
    return "\nExamples of what is wanted:\n" + json.dumps(shown, ensure_ascii=False, indent=2)
