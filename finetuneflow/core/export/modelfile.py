"""The Ollama Modelfile of a merged model: its chat format as a Go template, stop strings, SYSTEM.

Ollama guesses a template from chat_template.jinja by fuzzy matching against about twenty
built-ins, and older versions fall back to the raw prompt when the guess fails, which breaks
chat without an error. So the Modelfile states the template, generated from the family of the
chat template the model was trained with.

What Ollama hands a Go template (template/template.go, `collate`): `.Messages` holds every
message, system ones included (the Modelfile's SYSTEM becomes the first message unless the
request brings its own), with consecutive messages of one role merged; `$.System` joins the
system messages. So the templates below render system messages from `.Messages`, except where
the family puts the system text somewhere else (Gemma: inside the first user turn; Mistral:
before the last user message).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from finetuneflow.core.model_catalogue import OLLAMA_MERGED_ARCHITECTURES

EOS = "{eos}"  # replaced by the tokenizer's end-of-sequence token (plain format only)
DEFAULT_TEMPERATURE = 0.2


@dataclass(frozen=True)
class ChatFormat:
    name: str
    label: str
    markers: tuple[str, ...]  # all of them appear in a chat template of this family
    template: str  # Ollama's Go template
    stops: tuple[str, ...]
    excludes: tuple[str, ...] = ()  # a look-alike family has one of these

    def matches(self, text: str) -> bool:
        return (all(marker in text for marker in self.markers)
                and not any(marker in text for marker in self.excludes))

    def with_eos(self, eos_token: str | None) -> ChatFormat:
        """The format with the end-of-sequence token filled in (empty when there is none)."""
        eos = eos_token or ""
        stops = tuple(stop.replace(EOS, eos) for stop in self.stops if stop.replace(EOS, eos))
        return ChatFormat(self.name, self.label, self.markers,
                          self.template.replace(EOS, eos), stops, self.excludes)


CHATML = ChatFormat(
    "chatml", "ChatML", ("<|im_start|>", "<|im_end|>"),
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n",
    ("<|im_start|>", "<|im_end|>"),
    excludes=("<|im_sep|>",))  # Phi-4 writes ChatML with a separator token

LLAMA3 = ChatFormat(
    "llama3", "Llama 3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>\n"
    "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
    ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))

GEMMA = ChatFormat(
    "gemma", "Gemma", ("<start_of_turn>", "<end_of_turn>"),
    "{{- range $i, $_ := .Messages }}\n"
    "{{- if eq .Role \"user\" }}<start_of_turn>user\n"
    "{{ if and $.System (eq $i 1) }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n"
    "{{ else if eq .Role \"assistant\" }}<start_of_turn>model\n"
    "{{ .Content }}<end_of_turn>\n"
    "{{ end }}\n"
    "{{- end }}<start_of_turn>model\n",
    ("<start_of_turn>", "<end_of_turn>"))

PHI3 = ChatFormat(
    "phi3", "Phi-3", ("<|user|>", "<|assistant|>", "<|end|>"),
    "{{- range .Messages }}<|{{ .Role }}|>\n"
    "{{ .Content }}<|end|>\n"
    "{{ end }}<|assistant|>\n",
    ("<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|endoftext|>"))

MISTRAL = ChatFormat(
    "mistral", "Mistral", ("[INST]", "[/INST]"),
    "{{- range $i, $_ := .Messages }}\n"
    "{{- if eq .Role \"user\" }}[INST] "
    "{{ if and $.System (eq (len (slice $.Messages $i)) 1) }}{{ $.System }}\n\n{{ end }}"
    "{{ .Content }}[/INST]\n"
    "{{- else if eq .Role \"assistant\" }} {{ .Content }}</s>\n"
    "{{- end }}\n"
    "{{- end }}",
    ("[INST]", "[/INST]", "</s>"),
    excludes=("<<SYS>>",))  # Llama 2 chat uses [INST] too, with a different system block

# The trainer's own template for models without one (trainer/chat.py PLAIN_TEMPLATE).
PLAIN = ChatFormat(
    "plain", "User/Assistant", ("'Assistant: '", "capitalize"),
    "{{- range .Messages }}\n"
    "{{- if eq .Role \"assistant\" }}Assistant: {{ .Content }}" + EOS + "\n\n"
    "{{ else if eq .Role \"system\" }}System: {{ .Content }}\n\n"
    "{{ else }}User: {{ .Content }}\n\n"
    "{{ end }}\n"
    "{{- end }}Assistant: ",
    (EOS, "\nUser:"))

FORMATS: tuple[ChatFormat, ...] = (CHATML, LLAMA3, GEMMA, PHI3, MISTRAL, PLAIN)


def detect_chat_format(chat_template: str | None,
                       special_tokens: Iterable[str] = ()) -> ChatFormat | None:
    """The family of a HF chat template; without a template, of the tokenizer's special tokens.

    None when nothing matches: the Modelfile then leaves the template to Ollama.
    """
    if chat_template:
        return next((f for f in FORMATS if f.matches(chat_template)), None)
    tokens = " ".join(special_tokens)
    return next((f for f in FORMATS if f is not PLAIN and f.matches(tokens)), None)


@dataclass(frozen=True)
class OllamaSupport:
    importable: bool
    note: str  # empty when importable


def ollama_support(architecture: str) -> OllamaSupport:
    """Whether `ollama create` imports this architecture's safetensors (OLLAMA.md §23)."""
    if architecture in OLLAMA_MERGED_ARCHITECTURES:
        return OllamaSupport(True, "")
    return OllamaSupport(False, (
        f"Ollama cannot import {architecture} safetensors directly (its converter does not "
        "know this architecture). Convert the merged model to GGUF with llama.cpp first — "
        "`python convert_hf_to_gguf.py merged --outtype f16 --outfile merged/model.gguf` — "
        "then change the Modelfile's first line to `FROM ./model.gguf` and run the same "
        "`ollama create` command."))


def ollama_model_name(text: str) -> str:
    """A name `ollama create` accepts: lowercase letters, digits, '-', '_' and '.'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return name[:80] or "finetuneflow-model"


def create_command(model_name: str) -> str:
    return f"ollama create {model_name} -f Modelfile"


def _quoted(value: str) -> str:
    """A Modelfile value. Ollama's parser ends a triple-quoted value at the first `\"\"\"`
    followed by a space or a newline, and has no escapes, so a triple quote inside is split."""
    value = value.replace('"""', '" " "')
    if "\n" in value or value != value.strip() or '"' in value:
        return f'"""{value}"""'
    return f'"{value}"'


def render_modelfile(chat_format: ChatFormat | None, *, system: str, eos_token: str | None,
                     temperature: float = DEFAULT_TEMPERATURE, source: str = ".") -> str:
    """The Modelfile text; FROM `source`: "." for a merged model folder (the folder the file is
    in), "./NAME.gguf" for a GGUF file beside it."""
    lines = ["# Made by FineTuneFlow. Import this folder into Ollama with:",
             f"#   {create_command('MODEL-NAME')}", f"FROM {source}"]
    if chat_format is None:
        lines.append("# The chat format was not recognised: Ollama picks a template itself.")
        stops: tuple[str, ...] = (eos_token,) if eos_token else ()
    else:
        chat_format = chat_format.with_eos(eos_token)
        lines.append(f"TEMPLATE {_quoted(chat_format.template)}")
        stops = chat_format.stops
    lines += [f"PARAMETER stop {_quoted(stop)}" for stop in stops]
    lines.append(f"PARAMETER temperature {temperature:g}")
    if system.strip():
        lines.append(f"SYSTEM {_quoted(system.strip())}")
    return "\n".join(lines) + "\n"
