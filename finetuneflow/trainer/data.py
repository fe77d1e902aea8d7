"""Read and check the JSONL datasets before anything expensive happens.

Checking first means a bad line costs the user a second, not the minutes it takes to load a
model. Each problem names its line, so it can be fixed in the Review page or an editor.
Pure Python (no ML imports): runs before the stack is imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError

ROLES = ("system", "user", "assistant")
MAX_PROBLEMS_SHOWN = 5

Message = dict[str, str]
Conversation = list[Message]
# The model's chat template: messages, add_generation_prompt -> text.
Render = Callable[[Conversation, bool], str]


class DatasetError(Exception):
    """A dataset the trainer cannot use; the message is for the user."""


@dataclass(frozen=True)
class LoadedDataset:
    path: Path
    conversations: list[Conversation]


def load_conversations(path: Path, *, name: str) -> LoadedDataset:
    """Every line of `path` as a checked conversation; DatasetError lists the bad lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"The {name} was not found at {path}.") from None
    except UnicodeDecodeError as error:
        raise DatasetError(f"The {name} ({path.name}) is not UTF-8 text "
                           f"(byte {error.start}).") from None
    except OSError as error:
        raise DatasetError(f"The {name} ({path}) cannot be read: {error.strerror}.") from None
    conversations: list[Conversation] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            conversations.append(parse_line(line))
        except ValueError as error:
            problems.append(f"line {number}: {error}")
    if problems:
        raise DatasetError(_problems_message(name, path, problems))
    if not conversations:
        raise DatasetError(f"The {name} ({path.name}) is empty: generate or import examples "
                           "first.")
    return LoadedDataset(path, conversations)


def parse_line(line: str) -> Conversation:
    try:
        record = json.loads(line)
    except ValueError as error:
        raise ValueError(f"not valid JSON ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        raise ValueError('expected an object with a "messages" list')
    messages = [_parse_message(index, item)
                for index, item in enumerate(record["messages"], start=1)]
    if not any(message["role"] == "assistant" for message in messages):
        raise ValueError("no assistant reply to learn from")
    return messages


def _parse_message(index: int, item: Any) -> Message:
    if not isinstance(item, dict):
        raise ValueError(f"message {index} is not an object")
    role, content = item.get("role"), item.get("content")
    if role not in ROLES:
        raise ValueError(f"message {index} has role {role!r}; use one of {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise ValueError(f"message {index} has no text content")
    return {"role": role, "content": content}


def _problems_message(name: str, path: Path, problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems) - MAX_PROBLEMS_SHOWN
    tail = f"; and {more} more" if more > 0 else ""
    count = f"{len(problems)} bad line{'s' if len(problems) > 1 else ''}"
    return (f"The {name} ({path.name}) has {count}: {shown}{tail}. Fix or remove "
            f"{'them' if len(problems) > 1 else 'it'} and start again.")


def to_prompt_completion(conversations: list[Conversation], render: Render
                         ) -> list[dict[str, Conversation]]:
    """One prompt/completion pair per assistant reply, the conversation so far as the prompt.

    For chat templates that cannot mark the assistant's part: the loss then covers only the
    completions, so every reply is learnt and no prompt is. Each conversation is first put in
    a form that `render` (the model's chat template) renders consistently.
    """
    pairs = []
    for conversation in conversations:
        messages = prefix_consistent(conversation, render)
        for index, message in enumerate(messages):
            if message["role"] == "assistant" and index > 0:
                pairs.append({"prompt": messages[:index], "completion": [message]})
    return pairs


def prefix_consistent(messages: Conversation, render: Render) -> Conversation:
    """The conversation with the system text folded into the first user message when the
    template places it by position, else unchanged.

    The completion's tokens are found where the rendered prompt stops being the start of the
    rendered prompt + completion. Mistral's template writes the system text before the LAST
    user message, so it is in the prompt rendered alone but missing from the whole: the two
    part at the first user message, the user's words are learnt as if the model wrote them and
    the system text is never seen. Folded into the first user message, the text is the same
    both ways (and the same as at inference for one-turn chats).
    """
    if _prompts_are_prefixes(messages, render):
        return messages
    folded = _fold_system(messages)
    return folded if folded and _prompts_are_prefixes(folded, render) else messages


def _prompts_are_prefixes(messages: Conversation, render: Render) -> bool:
    try:
        return all(render(messages[:index + 1], False).startswith(render(messages[:index], True))
                   for index, message in enumerate(messages)
                   if message["role"] == "assistant" and index > 0)
    except TemplateError:  # a template that refuses a partial chat: leave the pairing to TRL
        return True


def _fold_system(messages: Conversation) -> Conversation | None:
    if len(messages) < 2 or messages[0]["role"] != "system" or messages[1]["role"] != "user":
        return None
    system, user = messages[0], messages[1]
    merged = {"role": "user", "content": f"{system['content']}\n\n{user['content']}"}
    return [merged, *messages[2:]]
