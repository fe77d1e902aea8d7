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

Each family's template is then fitted to the model's own chat template, rendered on probe
chats (see ChatFormat.fitted), so the Modelfile reproduces it byte for byte where a family's
members differ: the text after a reply, before a system prompt, and a default system turn. A
template that writes today's date (Llama 3.1 and later) gets the export's date, fixed: Go
templates in Ollama cannot write that date format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from finetuneflow.core.chat_template import ChatRenderer
from finetuneflow.core.model_catalogue import OLLAMA_MERGED_ARCHITECTURES

EOS = "{eos}"  # replaced by the tokenizer's end-of-sequence token
REPLY_END = "{reply_end}"  # replaced by what the model's template writes after a reply
SYSTEM_PREFIX = "{system_prefix}"  # replaced by what it writes before a system prompt
SYSTEM_SUFFIX = "{system_suffix}"  # … after a system prompt, before the turn's end
REPLY_PREFIX = "{reply_prefix}"  # … before an earlier reply's text (SmolLM3's empty think)
ANSWER_PREFIX = "{answer_prefix}"  # … after the prompt that asks for the answer
DEFAULT_TEMPERATURE = 0.2
PROBE_SYSTEM, PROBE_USER, PROBE_REPLY = "FTF-PROBE-SYSTEM", "FTF-PROBE-USER", "FTF-PROBE-REPLY"


@dataclass(frozen=True)
class ChatFormat:
    name: str
    label: str
    markers: tuple[str, ...]  # all of them appear in a chat template of this family
    template: str  # Ollama's Go template
    stops: tuple[str, ...]
    user_start: str  # opens a user turn: a reply's ending runs up to it
    reply_end: str  # what the family's templates usually write after a reply's text
    excludes: tuple[str, ...] = ()  # a look-alike family has one of these
    system_start: str | None = None  # opens a system turn, where the family has them
    system_prefix: str = ""  # written before the system prompt (Llama 3.1's dates)
    assistant_start: str | None = None  # opens a reply turn, where the template is fitted
    turn_end: str | None = None  # closes a system or user turn, where the template is fitted
    system_suffix: str = ""
    reply_prefix: str = ""
    answer_prefix: str = ""

    def matches(self, text: str) -> bool:
        return (all(marker in text for marker in self.markers)
                and not any(marker in text for marker in self.excludes))

    def with_eos(self, eos_token: str | None) -> ChatFormat:
        """The format with the end-of-sequence token filled in (empty when there is none)."""
        eos = eos_token or ""
        stops = tuple(stop.replace(EOS, eos) for stop in self.stops if stop.replace(EOS, eos))
        template = self.template.replace(EOS, eos)
        for placeholder, text, role in ((SYSTEM_PREFIX, self.system_prefix, "system"),
                                        (SYSTEM_SUFFIX, self.system_suffix, "system"),
                                        (REPLY_PREFIX, self.reply_prefix, "assistant")):
            template = template.replace(placeholder, _for_role(role, text))
        template = template.replace(
            ANSWER_PREFIX, _go_string(self.answer_prefix) if self.answer_prefix else "").replace(
            REPLY_END, _go_string(self.reply_end.replace(EOS, eos)))
        return replace(self, template=template, stops=stops)

    def fitted(self, chat_template: str, eos_token: str | None) -> ChatFormat:
        """The format as this model's own template writes it, byte for byte: the text after a
        reply (a template can drop the newline, e.g. `{% endgeneration %}` + trim_blocks), the
        text before a system prompt, and a default system turn written when the chat has none
        (Qwen2.5's, SmolLM2's). What the template refuses to render (Gemma 2 takes no system
        message) keeps the family's usual layout."""
        chat = [{"role": "user", "content": PROBE_USER},
                {"role": "assistant", "content": PROBE_REPLY},
                {"role": "user", "content": PROBE_USER}]
        text = _render(chat_template, eos_token, chat)
        if text is None:
            return self
        fitted = replace(self, reply_end=_between(text, PROBE_REPLY, self.user_start,
                                                  self.reply_end))
        with_system = _render(chat_template, eos_token,
                              [{"role": "system", "content": PROBE_SYSTEM}, *chat])
        if self.system_start is not None and with_system is not None:
            fitted = replace(fitted, system_prefix=_between(with_system, self.system_start,
                                                            PROBE_SYSTEM, ""))
            if self.turn_end is not None:
                fitted = replace(fitted, system_suffix=_between(with_system, PROBE_SYSTEM,
                                                                self.turn_end, ""))
        if self.assistant_start is not None:
            answer = text.rfind(self.assistant_start)
            fitted = replace(
                fitted, reply_prefix=_between(text, self.assistant_start, PROBE_REPLY, ""),
                answer_prefix=text[answer + len(self.assistant_start):] if answer >= 0 else "")
        prelude = text[:max(text.find(self.user_start), 0)]
        if not prelude:
            return fitted
        return replace(fitted, template=(
            f"{{{{- if not .System }}}}{_go_string(prelude)}{{{{ end }}}}" + fitted.template))


def _render(chat_template: str, eos_token: str | None, chat: list[dict[str, str]]
            ) -> str | None:
    """The chat as the template writes it, BOS left empty (the runtime adds it when
    tokenizing); None when the template refuses it."""
    renderer = ChatRenderer(chat_template, {"bos_token": "", "eos_token": eos_token or ""})
    try:
        return renderer.render(chat, add_generation_prompt=True)
    except Exception:  # a model's template may raise anything: keep the defaults
        return None


def _between(text: str, start: str, end: str, default: str) -> str:
    """The text between the first `start` and the `end` after it; default without both."""
    begin = text.find(start)
    finish = text.find(end, begin + len(start)) if begin >= 0 else -1
    return text[begin + len(start):finish] if finish >= 0 else default


def _for_role(role: str, text: str) -> str:
    """A Go template action that prints `text` in the turns of one role only."""
    return f'{{{{ if eq .Role "{role}" }}}}{_go_string(text)}{{{{ end }}}}' if text else ""


def _go_string(text: str) -> str:
    """Text as a Go template action that prints it: no trim marker next to it can eat it."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


CHATML = ChatFormat(
    "chatml", "ChatML", ("<|im_start|>", "<|im_end|>"),
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n" + SYSTEM_PREFIX + REPLY_PREFIX
    + "{{ .Content }}" + SYSTEM_SUFFIX +
    "{{ if eq .Role \"assistant\" }}" + REPLY_END + "{{ else }}<|im_end|>\n{{ end }}"
    "{{ end }}<|im_start|>assistant\n" + ANSWER_PREFIX,
    ("<|im_start|>", "<|im_end|>"), "<|im_start|>user", "<|im_end|>\n",
    excludes=("<|im_sep|>",),  # Phi-4 writes ChatML with a separator token
    system_start="<|im_start|>system\n", assistant_start="<|im_start|>assistant\n",
    turn_end="<|im_end|>")

LLAMA3 = ChatFormat(
    "llama3", "Llama 3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n" + SYSTEM_PREFIX
    + "{{ .Content }}"
    "{{ if eq .Role \"assistant\" }}" + REPLY_END + "{{ else }}<|eot_id|>{{ end }}"
    "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
    ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|start_header_id|>user",
    "<|eot_id|>", system_start="<|start_header_id|>system<|end_header_id|>\n\n")

GEMMA = ChatFormat(
    "gemma", "Gemma", ("<start_of_turn>", "<end_of_turn>"),
    "{{- range $i, $_ := .Messages }}\n"
    "{{- if eq .Role \"user\" }}<start_of_turn>user\n"
    "{{ if and $.System (eq $i 1) }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n"
    "{{ else if eq .Role \"assistant\" }}<start_of_turn>model\n"
    "{{ .Content }}" + REPLY_END + "\n"
    "{{- end }}\n"
    "{{- end }}<start_of_turn>model\n",
    ("<start_of_turn>", "<end_of_turn>"), "<start_of_turn>user", "<end_of_turn>\n")

PHI3 = ChatFormat(
    "phi3", "Phi-3", ("<|user|>", "<|assistant|>", "<|end|>"),
    "{{- range .Messages }}<|{{ .Role }}|>\n" + SYSTEM_PREFIX + "{{ .Content }}"
    "{{ if eq .Role \"assistant\" }}" + REPLY_END + "{{ else }}<|end|>\n{{ end }}"
    "{{ end }}<|assistant|>\n",
    ("<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|endoftext|>"), "<|user|>",
    "<|end|>\n", system_start="<|system|>\n")

# Phi-4-mini: Phi-3's tags with no newline after them, written as '<|' + role + '|>'.
PHI4 = ChatFormat(
    "phi4", "Phi-4-mini",
    ("'<|' + message['role'] + '|>' + message['content']", "<|end|>", "<|assistant|>"),
    "{{- range .Messages }}<|{{ .Role }}|>" + SYSTEM_PREFIX + "{{ .Content }}"
    "{{ if eq .Role \"assistant\" }}" + REPLY_END + "{{ else }}<|end|>{{ end }}"
    "{{ end }}<|assistant|>",
    ("<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|endoftext|>"), "<|user|>",
    "<|end|>", system_start="<|system|>")

MISTRAL = ChatFormat(
    "mistral", "Mistral", ("[INST]", "[/INST]"),
    "{{- range $i, $_ := .Messages }}\n"
    "{{- if eq .Role \"user\" }}[INST] "
    "{{ if and $.System (eq (len (slice $.Messages $i)) 1) }}{{ $.System }}\n\n{{ end }}"
    "{{ .Content }}[/INST]\n"
    "{{- else if eq .Role \"assistant\" }} {{ .Content }}" + REPLY_END + "\n"
    "{{- end }}\n"
    "{{- end }}",
    ("[INST]", "[/INST]", "</s>"), "[INST]", "</s>",
    excludes=("<<SYS>>",))  # Llama 2 chat uses [INST] too, with a different system block

# The trainer's own template for models without one (trainer/chat.py PLAIN_TEMPLATE).
PLAIN = ChatFormat(
    "plain", "User/Assistant", ("'Assistant: '", "capitalize"),
    "{{- range .Messages }}\n"
    "{{- if eq .Role \"assistant\" }}Assistant: {{ .Content }}" + REPLY_END +
    "{{ else if eq .Role \"system\" }}System: {{ .Content }}\n\n"
    "{{ else }}User: {{ .Content }}\n\n"
    "{{ end }}\n"
    "{{- end }}Assistant: ",
    (EOS, "\nUser:"), "User: ", EOS + "\n\n")

FORMATS: tuple[ChatFormat, ...] = (CHATML, LLAMA3, GEMMA, PHI3, PHI4, MISTRAL, PLAIN)


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
                     temperature: float = DEFAULT_TEMPERATURE,
                     chat_template: str | None = None, source: str = ".",
                     adapter: str | None = None) -> str:
    """The Modelfile text; FROM `source`: "." for a merged model folder (the folder the file is
    in), "./NAME.gguf" for a GGUF file beside it; with `adapter` (a LoRA GGUF), the file is
    Modelfile.adapter and FROM is the base the adapter was trained on. Its TEMPLATE is fitted
    to the model's own chat template when that is given."""
    command = create_command("MODEL-NAME") + (".adapter" if adapter else "")
    lines = ["# Made by FineTuneFlow. Import this folder into Ollama with:", f"#   {command}",
             f"FROM {source}"]
    if adapter:
        lines.append(f"ADAPTER {adapter}")
    if chat_format is None:
        lines.append("# The chat format was not recognised: Ollama picks a template itself.")
        stops: tuple[str, ...] = (eos_token,) if eos_token else ()
    else:
        if chat_template:
            chat_format = chat_format.fitted(chat_template, eos_token)
        chat_format = chat_format.with_eos(eos_token)
        lines.append(f"TEMPLATE {_quoted(chat_format.template)}")
        stops = chat_format.stops
    lines += [f"PARAMETER stop {_quoted(stop)}" for stop in stops]
    lines.append(f"PARAMETER temperature {temperature:g}")
    if system.strip():
        lines.append(f"SYSTEM {_quoted(system.strip())}")
    return "\n".join(lines) + "\n"
