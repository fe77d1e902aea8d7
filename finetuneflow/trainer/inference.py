"""Answering chats with the base model and the fine-tuned one: `trainer chat` and the export.

One load serves both: the adapter sits on the base model, and `disable_adapter()` gives the
base model's answer. The tokenizer comes from the adapter folder, so both answer in the chat
template the adapter was trained with. Weights load in the dtype they were saved in ("auto"),
which is also the dtype a merged model keeps.

Imported only once the protocol owns stdout (see `channel`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    StoppingCriteria,
    StoppingCriteriaList,
    TextStreamer,
)

from finetuneflow.core.child_protocol import (
    BASE,
    AnswerEvent,
    ChatJob,
    ProtocolError,
    StatusEvent,
    TokenEvent,
)
from finetuneflow.trainer.channel import EventChannel
from finetuneflow.trainer.errors import (
    ConfigError,
    ModelNotFoundError,
    RunContext,
    error_event,
    model_not_found_message,
)
from finetuneflow.trainer.model import Device, load_tokenizer, pick_device
from finetuneflow.trainer.stop import StopSignal

log = logging.getLogger(__name__)

# End-of-turn tokens of the common chat formats: generation stops at any the vocabulary has,
# as well as at the model's own end-of-sequence ids.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>",
                      "<|endoftext|>")


@dataclass
class Loaded:
    tokenizer: Any
    model: Any  # a PeftModel
    device: Device


def load_with_adapter(model_path: str, adapter_dir: str, device: Device,
                      channel: EventChannel) -> Loaded:
    """The base model with the adapter on top, ready to generate."""
    from peft import PeftModel

    for folder, what in ((model_path, "model"), (adapter_dir, "adapter")):
        if not Path(folder).is_dir():
            raise ModelNotFoundError(model_not_found_message(folder) if what == "model" else
                                     f"The adapter folder {folder} does not exist.")
    channel.emit(StatusEvent("loading_model", f"Loading {Path(model_path).name} with the "
                                              f"fine-tuned adapter ({device.label})…"))
    tokenizer = load_tokenizer(adapter_dir)
    placement = {"device_map": {"": device.index}} if device.kind == "cuda" else {}
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto", **placement)
    if device.kind == "mps":
        base = base.to("mps")
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    return Loaded(tokenizer, model, device)


def use(loaded: Loaded, variant: str) -> contextlib.AbstractContextManager[Any]:
    """The base model's weights for BASE, the fine-tuned ones otherwise."""
    return loaded.model.disable_adapter() if variant == BASE else contextlib.nullcontext()


def stop_token_ids(tokenizer: Any, model: Any) -> list[int]:
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    vocabulary = tokenizer.get_vocab()
    found.update(vocabulary[token] for token in END_OF_TURN_TOKENS if token in vocabulary)
    return sorted(found)


class _StopRequested(StoppingCriteria):
    def __init__(self, stop: StopSignal) -> None:
        self._stop = stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
                 ) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self._stop.requested, dtype=torch.bool,
                          device=input_ids.device)


class _TokenStreamer(TextStreamer):
    """Each decoded piece of the answer becomes a token event."""

    def __init__(self, tokenizer: Any, channel: EventChannel, variant: str) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._channel = channel
        self._variant = variant

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self._channel.emit(TokenEvent(text, self._variant))


@dataclass(frozen=True)
class Answer:
    text: str
    new_tokens: int
    stopped: bool


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The chat's tokens in the chat template, up to where the assistant's answer starts."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                              return_dict=False))


def generation_config(loaded: Loaded, *, max_new_tokens: int, temperature: float
                      ) -> GenerationConfig:
    """Greedy when temperature is 0; stops at any end-of-turn token."""
    stops = stop_token_ids(loaded.tokenizer, loaded.model)
    pad = loaded.tokenizer.pad_token_id
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {
        "do_sample": False}
    return GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=stops,
                            pad_token_id=pad if pad is not None else (stops or [0])[0],
                            **sampling)


def generate(loaded: Loaded, prompts: list[list[int]], config: GenerationConfig, *,
             variant: str, stop: StopSignal | None = None,
             streamer: TextStreamer | None = None) -> list[Answer]:
    """One `generate` call for all the prompts, left-padded so every answer starts at the same
    position; with an attention mask, generate derives each row's positions from it, so a
    batched answer is the answer the prompt gets alone. `stop` cuts the answers short."""
    width = max(len(ids) for ids in prompts)
    pad = int(config.pad_token_id)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts])
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts])
    criteria = StoppingCriteriaList([_StopRequested(stop)] if stop is not None else [])
    model = loaded.model
    with use(loaded, variant), torch.inference_mode():
        output = model.generate(input_ids=input_ids.to(model.device),
                                attention_mask=mask.to(model.device),
                                generation_config=config, streamer=streamer,
                                stopping_criteria=criteria)
    stops = set(config.eos_token_id)
    cut_short = stop is not None and stop.requested
    return [_decode(loaded.tokenizer, row[width:].tolist(), stops, cut_short) for row in output]


def _decode(tokenizer: Any, new: list[int], stops: set[int], cut_short: bool) -> Answer:
    """The text up to the first end-of-turn token: after it, a batch row holds padding."""
    end = next((index for index, token in enumerate(new) if token in stops), None)
    kept = new if end is None else new[:end]
    text = tokenizer.decode(kept, skip_special_tokens=True).strip()
    return Answer(text, len(new) if end is None else end + 1, cut_short)


def answer(loaded: Loaded, messages: list[dict[str, str]], *, variant: str,
           max_new_tokens: int, temperature: float, stop: StopSignal,
           channel: EventChannel | None = None) -> Answer:
    """Generate one reply (greedy when temperature is 0); stream it as token events if a
    channel is given."""
    config = generation_config(loaded, max_new_tokens=max_new_tokens, temperature=temperature)
    streamer = (_TokenStreamer(loaded.tokenizer, channel, variant) if channel is not None
                else None)
    return generate(loaded, [prompt_ids(loaded.tokenizer, messages)], config, variant=variant,
                    stop=stop, streamer=streamer)[0]


def run_chat(job_path: Path, channel: EventChannel, stop: StopSignal) -> int:
    """`trainer chat JOB.json`: stream each variant's answer; 0 also when stopped early."""
    device = pick_device()
    try:
        try:
            job = ChatJob.read(job_path)
        except ProtocolError as error:
            raise ConfigError(f"The chat job cannot be read: {error}.") from error
        loaded = load_with_adapter(job.model_path, job.adapter_dir, device, channel)
        torch.manual_seed(job.seed)
        for variant in job.variants:
            if stop.requested:
                break
            reply = answer(loaded, job.messages, variant=variant, stop=stop, channel=channel,
                           max_new_tokens=job.max_new_tokens, temperature=job.temperature)
            channel.emit(AnswerEvent(variant, reply.text, reply.new_tokens, reply.stopped))
        return 0
    except Exception as error:
        event = error_event(error, RunContext(device=device.kind, activity="Chat"))
        log.error("Chat failed (%s): %s", event.kind, event.message,
                  exc_info=event.detail is not None)
        channel.emit(event)
        return 1

