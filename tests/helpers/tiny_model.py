"""A tiny Llama model with a byte-level BPE tokenizer and a ChatML template, built offline.

Tests need a real model folder (config.json, tokenizer.json, chat template, safetensors) that
loads with transformers, trains in milliseconds and never touches the Hub. Building takes a few
seconds, so `cached_tiny_model()` builds it once per machine and version into a cache folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

BUILD_VERSION = "1"  # bump when the recipe changes so stale caches are rebuilt

SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML with {% generation %} markers around the assistant's part, so TRL can compute
# assistant-only loss (its "training-compatible" template check looks for them).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: What does the document say about storage? Answer: It keeps data on disk.",
    "Fine-tuning adapts a pretrained language model to a narrower task with few examples.",
    "LoRA trains small low-rank matrices while the base weights stay frozen.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Ça marche très bien.",
    "敏捷的棕色狐狸跳过了懒狗。これは日本語の文です。",
    "Numbers 0123456789, punctuation .,;:!?()[]{}<>\"' and symbols #$%&*+-/=@\\^_`|~",
]


def _train_tokenizer():  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TRAINING_TEXT * 50, trainer=trainer)
    return tokenizer


def build_tiny_model(dest: Path, *, seed: int = 0) -> Path:
    """Write a loadable Llama model + tokenizer folder (~0.5 MB) to `dest` and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    fast.save_pretrained(dest)
    return dest


def _cache_root() -> Path:
    override = os.environ.get("FINETUNEFLOW_TEST_CACHE")
    return Path(override) if override else Path(tempfile.gettempdir()) / "finetuneflow-test-cache"


def cached_tiny_model() -> Path:
    """The tiny model folder, built on first use and reused afterwards (also across processes)."""
    final = _cache_root() / f"tiny-llama-v{BUILD_VERSION}"
    if (final / "tokenizer.json").exists() and (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # Build aside and rename, so a concurrent or interrupted build never leaves half a folder.
    staging = Path(tempfile.mkdtemp(prefix="tiny-build-", dir=final.parent))
    build_tiny_model(staging / "model")
    with contextlib.suppress(OSError):  # another process won the race: its folder is as good
        (staging / "model").rename(final)
    shutil.rmtree(staging, ignore_errors=True)
    return final
