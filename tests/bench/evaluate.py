"""Evaluation answers benchmark (run by hand, not collected): python -m tests.bench.evaluate

Answering 50 questions with greedy decoding, as `trainer answer` does (trainer/answers.py:
sorted by prompt length, one left-padded `generate` per batch), in batches of 1 (one by one),
4, 8 and 16, on the tiny test model and on a random-init model of SmolLM2-135M's shape
(tests/bench/train.py), each with a LoRA adapter on, on the CPU. Prints each batch size's time
and its speed-up (one-by-one time ÷ batched time); target ≥ 3× at the default batch size (8).

Random weights never produce an end-of-turn token, so every answer runs to max_new_tokens:
no row of a batch idles while others finish, which real answers of unequal length do. The best
of --repeats runs counts (the machine is shared). Both sides get the same torch threads.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path
from typing import Any

from finetuneflow.core.child_protocol import FINETUNED, AnswerJob
from tests.bench.train import smol_shaped_model
from tests.helpers.tiny_model import cached_tiny_model

QUESTIONS = 50
BATCH_SIZES = (1, 4, 8, 16)
DEFAULT_BATCH = AnswerJob.__dataclass_fields__["batch_size"].default
SYSTEM = "You answer questions about the user's documents, briefly and from the documents."
TOPICS = ("the storage folder", "LoRA adapters", "the evaluation split", "checkpoints",
          "the chat template", "the learning rate", "exported reports", "GGUF files")


def questions(count: int) -> list[dict[str, Any]]:
    """Questions of 10 to 60 words, like held-out questions about a passage."""
    return [{"id": index, "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"What does the document say about {TOPICS[index % 8]}? "
                                    + "Give the reason and an example. " * (index % 9)}]}
            for index in range(count)]


def make_adapter(model_dir: Path, folder: Path) -> Path:
    """A LoRA adapter with random (non-zero) weights on every linear layer, and the tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                        init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    return folder


def time_batches(model_dir: Path, max_new_tokens: int, repeats: int) -> dict[int, float]:
    from finetuneflow.trainer.answers import answer_questions
    from finetuneflow.trainer.channel import EventChannel
    from finetuneflow.trainer.inference import load_with_adapter
    from finetuneflow.trainer.model import pick_device
    from finetuneflow.trainer.stop import StopSignal

    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as root:
        adapter = make_adapter(model_dir, Path(root) / "adapter")
        channel = EventChannel(io.StringIO())
        loaded = load_with_adapter(str(model_dir), str(adapter), pick_device(), channel)
        seconds = {}
        for batch_size in BATCH_SIZES:
            job = AnswerJob(model_path=str(model_dir), adapter_dir=str(adapter),
                            questions=questions(QUESTIONS), variants=[FINETUNED],
                            max_new_tokens=max_new_tokens, batch_size=batch_size)
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                answer_questions(loaded, job, channel, StopSignal())
                runs.append(time.perf_counter() - started)
            seconds[batch_size] = min(runs)
    return seconds


def report(name: str, seconds: dict[int, float], max_new_tokens: int) -> None:
    one_by_one = seconds[1]
    for batch_size, value in seconds.items():
        print(f"BENCH {name}: {QUESTIONS} questions × {max_new_tokens} new tokens, batch "
              f"{batch_size:>2}: {value:6.2f} s, speed-up ×{one_by_one / value:.2f}")
    ratio = one_by_one / seconds[DEFAULT_BATCH]
    print(f"BENCH {name}: batched (batch {DEFAULT_BATCH}) ÷ one-by-one speed-up ×{ratio:.2f} "
          f"(target ≥ 3) {'ok' if ratio >= 3 else 'BELOW TARGET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--tokens", type=int, default=32, help="max_new_tokens per answer")
    parser.add_argument("--quick", action="store_true", help="the tiny model only")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    models = {"tiny model": cached_tiny_model()}
    if not args.quick:
        models["SmolLM2-135M shape"] = smol_shaped_model()
    for name, model_dir in models.items():
        report(name, time_batches(model_dir, args.tokens, args.repeats), args.tokens)


if __name__ == "__main__":
    main()
