"""Try the trained model: answer a prompt with the base and the fine-tuned model of a finished
run (`trainer chat`, tokens streamed back as they come)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from finetuneflow.core.child_protocol import (
    BASE,
    FINETUNED,
    AnswerEvent,
    ChatJob,
    ErrorEvent,
    TokenEvent,
)
from finetuneflow.core.progress import CancelToken
from finetuneflow.services.errors import UserError
from finetuneflow.services.finished_runs import FinishedRuns
from finetuneflow.services.trainer_process import read_event, run_trainer

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext

TokenCallback = Callable[[str, str], None]  # (variant, text)


class ChatService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._runs = FinishedRuns(context)

    def trained_system_prompt(self, project_ref: str, run_id: int | None = None) -> str:
        """The system prompt the run's model learnt with (what `chat` uses by default)."""
        return self._runs.trained_system_prompt(self._runs.get(project_ref, run_id))

    def chat(self, project_ref: str, prompt: str, *, run_id: int | None = None,
             base: bool = False, system_prompt: str | None = None, temperature: float = 0.7,
             max_tokens: int = 256, on_token: Callable[[str], None] | None = None,
             cancel: CancelToken | None = None) -> str:
        """One answer, from the fine-tuned model (or the base model), streamed to `on_token`
        (called on this thread). The system prompt defaults to the one the model learnt with;
        a cancel ends the answer after the current token and returns what was written."""
        variant = BASE if base else FINETUNED
        answers = self._chat(project_ref, prompt, [variant], run_id=run_id,
                             system_prompt=system_prompt, temperature=temperature,
                             max_tokens=max_tokens, cancel=cancel,
                             on_token=(lambda _variant, text: on_token(text)) if on_token
                             else None)
        return answers.get(variant, "")

    def compare(self, project_ref: str, prompt: str, *, run_id: int | None = None,
                system_prompt: str | None = None, temperature: float = 0.7,
                max_tokens: int = 256, on_token: TokenCallback | None = None,
                cancel: CancelToken | None = None) -> dict[str, str]:
        """The base model's answer, then the fine-tuned one's ({"base": …, "finetuned": …});
        `on_token(variant, text)` hears each piece as it comes."""
        return self._chat(project_ref, prompt, [BASE, FINETUNED], run_id=run_id,
                          system_prompt=system_prompt, temperature=temperature,
                          max_tokens=max_tokens, on_token=on_token, cancel=cancel)

    def _chat(self, project_ref: str, prompt: str, variants: list[str], *, run_id: int | None,
              system_prompt: str | None, temperature: float, max_tokens: int,
              on_token: TokenCallback | None, cancel: CancelToken | None) -> dict[str, str]:
        if not prompt.strip():
            raise UserError("Type a prompt first.")
        if not 0 <= temperature <= 2 or max_tokens < 1:
            raise UserError("Temperature must be between 0 and 2 and max tokens at least 1.")
        run = self._runs.get(project_ref, run_id)
        system = (self._runs.trained_system_prompt(run) if system_prompt is None
                  else system_prompt)
        messages = ([{"role": "system", "content": system}] if system.strip() else []) + [
            {"role": "user", "content": prompt}]
        job = ChatJob(model_path=str(run.model_dir), adapter_dir=str(run.adapter_dir),
                      messages=messages, variants=variants, temperature=temperature,
                      max_new_tokens=max_tokens, seed=int(run.config.get("seed") or 0))
        answers: dict[str, str] = {}
        failure: list[ErrorEvent] = []

        def on_line(line: str) -> None:
            event = read_event(line)
            if isinstance(event, TokenEvent) and on_token is not None:
                on_token(event.variant, event.text)
            elif isinstance(event, AnswerEvent):
                answers[event.variant] = event.text
            elif isinstance(event, ErrorEvent):
                failure.append(event)

        log_path = self._context.home.project_file(run.project_id, "logs", f"chat-{run.id}.log")
        with tempfile.TemporaryDirectory(dir=run.folder) as folder:
            job_path = job.write(Path(folder) / "chat-job.json")
            code = run_trainer(["chat", str(job_path)], log_path, on_line, cancel)
        if failure:
            raise UserError(failure[0].message)
        if code != 0 and not (cancel is not None and cancel.cancelled):
            raise UserError(f"The chat process ended unexpectedly (exit code {code}); its log "
                            f"is {log_path}.")
        return answers
