"""`trainer export JOB.json`: the parts of an export that need the ML stack.

1. The base and the fine-tuned model answer the sample prompts (greedy, so the report is
   reproducible), from the exported adapter itself, so the report shows what was shipped.
2. Optionally, the adapter is merged into the base weights (`merge_and_unload`) and saved as
   safetensors with the tokenizer (its config readable by transformers 4.x too) and chat
   template. Before saving, the merged model's logits are compared with the adapter's on a
   probe input: the event reports the largest difference.

The parent writes everything else (config.json, report, Modelfile, zip). A stop request ends
the export between two steps; the parent throws the partial folder away.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from finetuneflow.core.child_protocol import (
    BASE,
    FINETUNED,
    ExportedEvent,
    ExportJob,
    ProtocolError,
    StatusEvent,
    StoppedEvent,
)
from finetuneflow.core.export.tokenizer_config import make_tokenizer_config_portable
from finetuneflow.trainer.channel import EventChannel
from finetuneflow.trainer.errors import ConfigError, RunContext, error_event
from finetuneflow.trainer.inference import Loaded, answer, load_with_adapter
from finetuneflow.trainer.model import pick_device
from finetuneflow.trainer.stop import StopSignal

log = logging.getLogger(__name__)
PROBE_TEXT = "Hello"  # the merge check's input when there are no sample prompts


class _Stopped(Exception):
    pass


def run_export(job_path: Path, channel: EventChannel, stop: StopSignal) -> int:
    """0 when exported or stopped on request, 1 after an error event."""
    device = pick_device()
    job: ExportJob | None = None
    try:
        try:
            job = ExportJob.read(job_path)
        except ProtocolError as error:
            raise ConfigError(f"The export job cannot be read: {error}.") from error
        loaded = load_with_adapter(job.model_path, job.adapter_dir, device, channel)
        samples = _answer_samples(loaded, job, channel, stop)
        merged_dir, difference, dtype = None, None, _dtype(loaded.model)
        if job.merged_dir:
            _check(stop)
            difference = _merge_and_save(loaded, job, channel)
            merged_dir = job.merged_dir
        channel.emit(ExportedEvent(samples=samples, merged_dir=merged_dir,
                                   merge_max_abs_diff=difference, dtype=dtype,
                                   message="The model parts of the export are written."))
        return 0
    except _Stopped:
        channel.emit(StoppedEvent(step=0, message="Export stopped; nothing was kept."))
        return 0
    except Exception as error:
        output = (job.merged_dir or job.adapter_dir) if job else ""
        event = error_event(error, RunContext(device=device.kind, output_dir=output or "",
                                              activity="Export"))
        log.error("Export failed (%s): %s", event.kind, event.message,
                  exc_info=event.detail is not None)
        channel.emit(event)
        return 1


def _check(stop: StopSignal) -> None:
    if stop.requested:
        raise _Stopped()


def _answer_samples(loaded: Loaded, job: ExportJob, channel: EventChannel,
                    stop: StopSignal) -> list[dict[str, str]]:
    samples = []
    for number, messages in enumerate(job.prompts, start=1):
        _check(stop)
        channel.emit(StatusEvent("samples", f"Answering sample prompt {number} of "
                                            f"{len(job.prompts)} (base and fine-tuned)…"))
        replies = {variant: answer(loaded, messages, variant=variant, stop=stop,
                                   max_new_tokens=job.max_new_tokens, temperature=0.0).text
                   for variant in (BASE, FINETUNED)}
        samples.append(replies)
    _check(stop)
    return samples


def _merge_and_save(loaded: Loaded, job: ExportJob, channel: EventChannel) -> float:
    channel.emit(StatusEvent("merging", "Merging the adapter into the base model…"))
    probe = _probe_inputs(loaded, job)
    with torch.inference_mode():
        adapter_logits = loaded.model(**probe).logits.float()
        merged = loaded.model.merge_and_unload()
        difference = (merged(**probe).logits.float() - adapter_logits).abs().max().item()
    log.info("merged model vs adapter on the probe: max |logit difference| %.3g", difference)
    channel.emit(StatusEvent("saving", "Saving the merged model…"))
    merged_dir = Path(job.merged_dir or "")
    merged.save_pretrained(merged_dir)
    loaded.tokenizer.save_pretrained(merged_dir)
    make_tokenizer_config_portable(merged_dir)
    return float(difference)


def _probe_inputs(loaded: Loaded, job: ExportJob) -> dict[str, Any]:
    tokenizer = loaded.tokenizer
    if job.prompts:
        inputs = tokenizer.apply_chat_template(job.prompts[0], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
    else:
        inputs = tokenizer(PROBE_TEXT, return_tensors="pt")
    return {name: tensor.to(loaded.model.device) for name, tensor in inputs.items()}


def _dtype(model: Any) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")
