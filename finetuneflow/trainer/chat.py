"""Which tokens the loss covers: the assistant's replies, never the prompts (unless asked).

1. The chat template has `{% generation %}` markers → TRL's `assistant_only_loss`.
2. TRL ships a training version of the template (known families) → the same, with that one.
3. Otherwise → each reply becomes a prompt/completion pair; TRL's completion-only loss covers
   the completion alone.
4. No chat template at all (a base model) → a plain "User:/Assistant:" template with markers,
   saved with the adapter so the fine-tuned model is used the way it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetuneflow.core.chat_template import PLAIN_TEMPLATE
from finetuneflow.core.child_protocol import WarningEvent

ASSISTANT = "assistant"
COMPLETION = "completion"
ALL = "all"

@dataclass(frozen=True)
class LossPlan:
    loss_on: str  # ASSISTANT | COMPLETION | ALL
    assistant_only_loss: bool
    to_prompt_completion: bool
    warning: WarningEvent | None = None


def plan_loss(tokenizer: Any, setting: str) -> LossPlan:
    """Decide for this tokenizer; may set a chat template on it (case 4)."""
    if setting == "off":
        return LossPlan(ALL, False, False, WarningEvent("loss_on_prompts", (
            "Training on whole conversations, prompts included, as the settings ask: the model "
            "also learns to write the user's side.")))
    template = tokenizer.chat_template
    if not template:
        tokenizer.chat_template = PLAIN_TEMPLATE
        return LossPlan(ASSISTANT, True, False, WarningEvent("no_chat_template", (
            "This model has no chat template, so it was given a simple 'User: … Assistant: …' "
            "one, saved with the adapter. An instruct model usually gives better results.")))
    if _has_generation_markers(template) or _trl_training_template(tokenizer) is not None:
        return LossPlan(ASSISTANT, True, False)
    return LossPlan(COMPLETION, False, True, WarningEvent("prompt_completion", (
        "This model's chat template cannot mark the assistant's replies, so each reply is "
        "trained as a separate prompt/completion example (the conversation before it is the "
        "prompt). Only replies are learnt; multi-turn examples count once per reply.")))


def _has_generation_markers(template: str | dict[str, str]) -> bool:
    from trl.chat_template_utils import has_generation_markers

    return has_generation_markers(template)


def _trl_training_template(tokenizer: Any) -> str | None:
    """TRL's patched template for this family, or None when it has none."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        return get_training_chat_template(tokenizer)
    except ValueError:
        return None
