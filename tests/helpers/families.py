"""Tiny random-init models of each architecture people fine-tune, with their chat layouts.

Each family gets the real config.json shape of its architecture (model_type, attention and MLP
variants, norms, tied embeddings, sliding window where the family has one, Qwen3's qk-norm comes
with its config class) at a toy size, a byte-level BPE tokenizer holding the family's special
tokens, and a chat template with the family's layout. Where TRL ships the family's real template
(Qwen3, Gemma 3, Llama 3.2) that exact text is used, because the trainer's masking depends on
recognising it; the others are written here after the published templates (Phi-4-mini's is
verbatim, Mistral v0.3's and SmolLM3's keep their layout without the tool-calling parts).

Built once per machine and recipe version into the same cache as tests/helpers/tiny_model.py, so
other tests can parametrise over `FAMILIES` with `cached_family_model(name)`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.helpers.tiny_model import _TRAINING_TEXT, _cache_root

BUILD_VERSION = "1"  # bump when a recipe changes so stale caches are rebuilt

# Mistral-7B-Instruct-v0.3's layout: the system text goes before the LAST user message, each
# reply is " content</s>", roles must alternate.
MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{%- set user_messages = loop_messages | selectattr('role', 'equalto', 'user') | list %}"
    "{{- bos_token }}"
    "{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('After the optional system message, conversation roles must "
    "alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + message['content'] | trim + eos_token }}"
    "{%- else %}{{- raise_exception('Only user and assistant roles are supported') }}"
    "{%- endif %}"
    "{%- endfor %}"
)

# microsoft/Phi-4-mini-instruct's template, verbatim: no newline after the role tags (Phi-3 has
# one), the EOS token closes a conversation that does not end on a generation prompt.
PHI4_MINI_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and "
    "message['tools'] is not none %}{{ '<|' + message['role'] + '|>' + message['content'] + "
    "'<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}{% else %}{{ '<|' + "
    "message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)

# SmolLM3-3B's layout: ChatML whose system turn carries a metadata block and the reasoning mode;
# in /no_think mode (the default here) every reply starts with an empty think block.
SMOLLM3_TEMPLATE = (
    "{%- set reasoning_mode = '/no_think' -%}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set custom = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set custom = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{{- '<|im_start|>system\\n## Metadata\\n\\nKnowledge Cutoff Date: June 2025\\n"
    "Reasoning Mode: ' + reasoning_mode + '\\n\\n## Custom Instructions\\n\\n' + custom + "
    "'\\n\\n<|im_end|>\\n' -}}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<|im_start|>user\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n' + message['content'].lstrip('\\n')"
    " + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n' -}}"
    "{%- endif -%}"
)


def _trl_template(name: str) -> str:
    """The real template of a family, as TRL ships it (and recognises it)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text(
        encoding="utf-8")


@dataclass(frozen=True)
class Family:
    name: str              # the architecture's short name, used for cache folders and test ids
    architecture: str      # config.json architectures[0]
    chat_format: str       # what core/export/modelfile.py detect_chat_format must answer
    template: Callable[[], str]
    bos: str | None
    eos: str
    pad: str
    turn_end: str          # the token that ends an assistant turn in this layout
    extra_tokens: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    system_role: bool = True  # False: the template folds the system text into a user turn
    # Text that may sit inside an assistant's masked span besides its content and turn end.
    reply_decorations: tuple[str, ...] = ()
    # None: a byte-level BPE tokenizer; else a SentencePiece-style one whose text gets a "▁"
    # before it ("prefix", Mistral's) or not ("no-prefix", Gemma's)
    sentencepiece: str | None = None


_SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}

FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("llama", "LlamaForCausalLM", "llama3", lambda: _trl_template("llama3_2"),
           bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
           turn_end="<|eot_id|>",
           extra_tokens=("<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                         "<|eom_id|>", "<|python_tag|>"),
           config={**_SMALL, "max_position_embeddings": 131072, "tie_word_embeddings": True,
                   "rope_parameters": {
                       "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192}}),
    Family("qwen3", "Qwen3ForCausalLM", "chatml", lambda: _trl_template("qwen3"),
           bos=None, eos="<|im_end|>", pad="<|endoftext|>", turn_end="<|im_end|>",
           extra_tokens=("<|im_start|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
                         "<tool_response>", "</tool_response>"),
           config={**_SMALL, "head_dim": 32, "tie_word_embeddings": True,
                   "use_sliding_window": False, "sliding_window": None},
           reply_decorations=("<think>", "</think>")),
    Family("gemma3", "Gemma3ForCausalLM", "gemma", lambda: _trl_template("gemma3"),
           bos="<bos>", eos="<end_of_turn>", pad="<pad>", turn_end="<end_of_turn>",
           extra_tokens=("<eos>", "<unk>", "<start_of_turn>", "<start_of_image>"),
           config={**_SMALL, "num_key_value_heads": 1, "head_dim": 32,
                   "query_pre_attn_scalar": 32, "sliding_window": 16,
                   "layer_types": ["sliding_attention", "full_attention"],
                   "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True},
           system_role=False),
    Family("smollm3", "SmolLM3ForCausalLM", "chatml", lambda: SMOLLM3_TEMPLATE,
           bos=None, eos="<|im_end|>", pad="<|finetune_right_pad_id|>", turn_end="<|im_end|>",
           extra_tokens=("<|im_start|>", "<|end_of_text|>", "<think>", "</think>"),
           config={**_SMALL, "no_rope_layers": [1, 0], "no_rope_layer_interval": 2,
                   "tie_word_embeddings": True, "use_sliding_window": False}),
    Family("phi3", "Phi3ForCausalLM", "phi4", lambda: PHI4_MINI_TEMPLATE,
           bos="<|endoftext|>", eos="<|endoftext|>", pad="<|dummy_pad|>", turn_end="<|end|>",
           extra_tokens=("<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>",
                         "<|/tool|>"),
           config={**_SMALL, "partial_rotary_factor": 0.75, "tie_word_embeddings": True},
           reply_decorations=("<|endoftext|>",)),
    Family("mistral", "MistralForCausalLM", "mistral", lambda: MISTRAL_TEMPLATE,
           bos="<s>", eos="</s>", pad="<pad>", turn_end="</s>",
           extra_tokens=("<unk>", "[INST]", "[/INST]"),
           config={**_SMALL, "sliding_window": None, "tie_word_embeddings": False}),
)}


# The real released tokenizers of Mistral v0.3 and Gemma 3 are SentencePiece-style (see
# _sentencepiece_tokenizer), with their special tokens first and a BOS added by HF.
SENTENCEPIECE_FAMILIES: dict[str, Family] = {
    "mistral-spm": replace(FAMILIES["mistral"], name="mistral-spm", sentencepiece="prefix"),
    "gemma3-spm": replace(FAMILIES["gemma3"], name="gemma3-spm", sentencepiece="no-prefix"),
}


def _sentencepiece_tokenizer(family: Family, special_tokens: list[str]
                             ):  # -> tokenizers.Tokenizer
    """The shape of a tokenizer.json converted from SentencePiece: a BPE with byte fallback over
    text whose spaces are "▁", the special tokens, then the 256 "<0xXX>" byte tokens, then the
    pieces; its merges list every pair that joins to a piece, ordered by the piece's id (what
    transformers' converter writes). CJK text is left out of training, so it falls back to
    bytes, as rare text does in the real vocabularies."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers.tokenization_utils_base import generate_merges

    space = "\u2581"
    replace_space = normalizers.Replace(" ", space)
    normalizer = (normalizers.Sequence([normalizers.Prepend(space), replace_space])
                  if family.sentencepiece == "prefix" else replace_space)
    trained = Tokenizer(models.BPE())
    trained.normalizer = normalizer
    trained.train_from_iterator(
        [line for line in _TRAINING_TEXT if line.isascii() or "Fuchs" in line] * 50,
        trainer=trainers.BpeTrainer(vocab_size=600, show_progress=False))
    vocab = {token: index for index, token in enumerate(special_tokens)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for token, _ in sorted(trained.get_vocab().items(), key=lambda item: item[1]):
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.BPE(
        vocab=vocab, merges=generate_merges(vocab, skip_tokens=special_tokens),
        unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tokenizer.normalizer = normalizer
    steps = [decoders.Replace(space, " "), decoders.ByteFallback(), decoders.Fuse()]
    if family.sentencepiece == "prefix":
        steps.append(decoders.Strip(" ", 1, 0))
    tokenizer.decoder = decoders.Sequence(steps)
    tokenizer.add_special_tokens(special_tokens)
    assert family.bos is not None
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{family.bos} $A", pair=f"{family.bos} $A $B:1",
        special_tokens=[(family.bos, vocab[family.bos])])
    return tokenizer


def _train_tokenizer(special_tokens: list[str], ascii_only: bool = False
                     ):  # -> tokenizers.Tokenizer
    """ascii_only: no token holds a byte above 127, so whatever a random model writes is
    valid UTF-8 (llama-cpp-python's server slows to a crawl on long runs of broken UTF-8)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = ([bytes_to_unicode()[byte] for byte in range(128)] if ascii_only
                else pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=special_tokens, show_progress=False,
        initial_alphabet=alphabet, **({"limit_alphabet": len(alphabet)} if ascii_only else {}))
    text = [line for line in _TRAINING_TEXT if line.isascii() or not ascii_only]
    tokenizer.train_from_iterator(text * 50, trainer=trainer)
    return tokenizer


def _config(family: Family, tokenizer: Any) -> Any:
    from transformers import AutoConfig

    model_type = {"Gemma3ForCausalLM": "gemma3_text"}.get(
        family.architecture, family.architecture.removesuffix("ForCausalLM").lower())
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
           "bos_token_id": tokenizer.bos_token_id}
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **ids, **family.config)
    config.architectures = [family.architecture]
    return config


def build_family_model(family: Family, dest: Path, *, seed: int = 0, ascii_only: bool = False
                       ) -> Path:
    """Write a loadable model + tokenizer folder of `family` to `dest` and return it."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    named = [token for token in (family.pad, family.bos, family.eos) if token]
    specials = list(dict.fromkeys([*named, *family.extra_tokens]))
    if family.sentencepiece:
        specials = list(dict.fromkeys([*specials, "<unk>"]))
        tokenizer = _sentencepiece_tokenizer(family, specials)
    else:
        tokenizer = _train_tokenizer(specials, ascii_only)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=family.bos, eos_token=family.eos,
        pad_token=family.pad, unk_token="<unk>" if family.sentencepiece else None,
        additional_special_tokens=[t for t in specials if t not in named])
    fast.chat_template = family.template()
    model = AutoModelForCausalLM.from_config(_config(family, fast))
    assert type(model).__name__ == family.architecture, type(model).__name__
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    fast.save_pretrained(dest)
    return dest


def cached_family_model(name: str) -> Path:
    """The tiny model folder of family `name`, built on first use (also across processes)."""
    final = _cache_root() / f"tiny-family-{name}-v{BUILD_VERSION}"  # apart from tiny-llama-v*
    if (final / "tokenizer.json").exists() and (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"tiny-family-{name}-build-", dir=final.parent))
    build_family_model({**FAMILIES, **SENTENCEPIECE_FAMILIES}[name], staging / "model")
    with contextlib.suppress(OSError):  # another process won the race: its folder is as good
        (staging / "model").rename(final)
    shutil.rmtree(staging, ignore_errors=True)
    return final
