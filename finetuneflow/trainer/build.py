"""Assemble the SFTTrainer from the job: arguments, LoRA, datasets, callbacks.

Imported only once the protocol owns stdout (see `channel`): importing it loads torch,
transformers, trl and peft.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import torch
import transformers
from peft import LoraConfig
from transformers import TrainingArguments
from trl import SFTConfig, SFTTrainer

from finetuneflow.core.child_protocol import StartedEvent
from finetuneflow.core.training.config import TrainingConfig
from finetuneflow.core.training.stopping import EvalWatch
from finetuneflow.trainer.callbacks import (
    GuardCallback,
    Outcome,
    Progress,
    ProtocolCallback,
    StopCallback,
    perplexity,
)
from finetuneflow.trainer.channel import EventChannel
from finetuneflow.trainer.chat import LossPlan, plan_loss
from finetuneflow.trainer.data import LoadedDataset, to_prompt_completion
from finetuneflow.trainer.model import (
    Device,
    load_model,
    load_tokenizer,
    pick_device,
    precision_arguments,
)
from finetuneflow.trainer.stop import StopSignal

if TYPE_CHECKING:
    from finetuneflow.trainer.run import Inputs

__all__ = ["build_trainer", "load_model", "load_tokenizer", "peak_memory_bytes",
           "perplexity", "pick_device", "plan_loss", "tokens_this_process"]

log = logging.getLogger(__name__)

# Progress bars and per-weight loading lines are noise in a log file.
datasets.disable_progress_bars()
transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_warning()


@dataclass
class TrainerParts:
    trainer: Any
    outcome: Outcome
    progress: Progress
    guard: GuardCallback
    started: StartedEvent


def build_trainer(inputs: Inputs, model: Any, tokenizer: Any, plan: LossPlan, device: Device,
                  channel: EventChannel, stop: StopSignal, resume_from: Path | None
                  ) -> TrainerParts:
    config = inputs.config
    train_set = sft_dataset(inputs.train, plan, tokenizer)
    eval_set = sft_dataset(inputs.eval, plan, tokenizer) if inputs.eval else None
    outcome, progress = Outcome(), Progress()
    watch = EvalWatch(patience=config.early_stopping_patience,
                      threshold=config.early_stopping_threshold,
                      divergence_factor=config.divergence_factor)
    guard = GuardCallback(watch, outcome)
    trainer = SFTTrainer(
        model=model, args=sft_arguments(inputs, plan, device), train_dataset=train_set,
        eval_dataset=eval_set, processing_class=tokenizer, peft_config=lora_config(config))
    trainable, total = trainer.model.get_nb_trainable_parameters()
    started = StartedEvent(
        run_id=inputs.job.run_id, total_steps=0, model=inputs.job.model_path,
        method=config.method, device=device.label, train_examples=len(train_set),
        eval_examples=len(eval_set) if eval_set is not None else 0,
        trainable_params=int(trainable), total_params=int(total), loss_on=plan.loss_on,
        processes=trainer.args.world_size,
        resumed_from=str(resume_from) if resume_from else None)
    memory = partial(peak_memory_bytes, device)
    for callback in (ProtocolCallback(channel, started, progress, memory), guard,
                     StopCallback(stop, outcome)):
        trainer.add_callback(callback)
    return TrainerParts(trainer, outcome, progress, guard, started)


def checkpointing_arguments(enabled: bool,
                            arguments: type = TrainingArguments) -> dict[str, Any]:
    """transformers 5.2x renamed `gradient_checkpointing` to `activation_checkpointing` (the old
    name warns); 5.0–5.1x know only the old one. Pass the name the installed version takes."""
    names = {field.name for field in dataclasses.fields(arguments)}
    prefix = "activation" if "activation_checkpointing" in names else "gradient"
    return {f"{prefix}_checkpointing": enabled,
            f"{prefix}_checkpointing_kwargs": {"use_reentrant": False} if enabled else None}


def sft_arguments(inputs: Inputs, plan: LossPlan, device: Device) -> SFTConfig:
    config, job = inputs.config, inputs.job
    evaluate = inputs.eval is not None
    # Keeping the best adapter needs a checkpoint at every evaluation that could be the best.
    keep_best = evaluate and config.save_steps % config.eval_steps == 0
    return SFTConfig(
        output_dir=job.checkpoints_dir,
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # below 1: a fraction of the run (transformers 5)
        max_length=config.max_seq_length,
        packing=config.packing,
        **checkpointing_arguments(config.activation_checkpointing),
        assistant_only_loss=plan.assistant_only_loss,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=keep_best,
        metric_for_best_model="eval_loss" if evaluate else None,
        greater_is_better=False if evaluate else None,
        seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        **precision_arguments(device),
    )


def lora_config(config: TrainingConfig) -> LoraConfig:
    targets = config.target_modules
    return LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(targets) if isinstance(targets, list) else targets,
        bias="none", task_type="CAUSAL_LM")


def sft_dataset(loaded: LoadedDataset, plan: LossPlan, tokenizer: Any) -> datasets.Dataset:
    if plan.to_prompt_completion:
        def render(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
            return str(tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt))

        return datasets.Dataset.from_list(to_prompt_completion(loaded.conversations, render))
    return datasets.Dataset.from_list([{"messages": messages}
                                       for messages in loaded.conversations])


def tokens_this_process(trainer: Any, progress: Progress) -> int:
    """Tokens trained on since this process started (resumed or not); TRL's running count,
    else the last logged one."""
    counted = getattr(trainer, "_total_train_tokens", None)
    return int(counted) if isinstance(counted, int | float) else progress.tokens_now


def peak_memory_bytes(device: Device) -> int | None:
    if device.kind == "cuda":
        return int(torch.cuda.max_memory_allocated(device.index))
    if device.kind == "mps":
        return int(torch.mps.driver_allocated_memory())
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB else
