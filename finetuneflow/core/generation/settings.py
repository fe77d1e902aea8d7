"""Where the LLM lives and how to talk to it; saved with the project, so it never holds the key."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from finetuneflow.core.generation.errors import ConfigurationError

Provider = Literal["ollama-cloud", "ollama", "openai"]
# How the answer's JSON shape is asked for: auto tries json_schema, then json_object, then
# plain text with the schema in the prompt, as far as the server needs.
StructuredMode = Literal["auto", "json_schema", "json_object", "text"]
STRUCTURED_MODES: tuple[StructuredMode, ...] = ("auto", "json_schema", "json_object", "text")
ApiKind = Literal["native", "openai"]

PROVIDERS: tuple[Provider, ...] = ("ollama-cloud", "ollama", "openai")
DEFAULT_BASE_URLS: dict[str, str] = {
    "ollama-cloud": "https://ollama.com",
    "ollama": "http://localhost:11434",
    "openai": "http://localhost:8000/v1",
}
# Ollama Cloud queues requests over the plan's limit (Free 1, Pro 3, Max 10): 3 suits Pro.
# A local server runs a few requests in parallel (OLLAMA_NUM_PARALLEL) and queues the rest.
DEFAULT_CONCURRENCY: dict[str, int] = {"ollama-cloud": 3, "ollama": 2, "openai": 4}
DEFAULT_MODELS: dict[str, str] = {"ollama-cloud": "gpt-oss:120b", "ollama": "", "openai": ""}
# Hosts that answer with a redirect that turns a POST into a GET: say the right one up front.
WRONG_HOSTS: dict[str, str] = {"api.ollama.com": "https://ollama.com"}
CONNECT_TIMEOUT_S = 10.0
MB = 2**20
KB = 2**10


@dataclass(frozen=True)
class ResponseLimits:
    """What one answer may cost, whatever the server sends: app-wide settings, enforced while
    reading, before the memory is spent. The deadline is separate from the read timeout,
    which only bounds the silence between two pieces."""

    max_answer_bytes: int = 8 * MB  # a whole body, or all the lines of a stream together
    max_line_bytes: int = 1 * MB  # one line of a stream (a stream without newlines stops here)
    deadline_s: float = 600.0  # one request, from sending it to the last byte


@dataclass(frozen=True)
class LLMSettings:
    """Connection settings; empty or None fields take the provider's default.

    The API key is deliberately not a field: the caller passes it to the client at run time
    (from OLLAMA_API_KEY or the keychain), so saving these settings can never leak it.
    """

    provider: Provider = "ollama-cloud"
    base_url: str = ""
    model: str = ""
    api: ApiKind | None = None  # native for Ollama providers, openai for "openai"
    concurrency: int | None = None
    read_timeout: float = 300.0  # seconds; when streaming, the longest silence between chunks
    temperature: float = 0.2
    max_tokens: int | None = 8192  # room for a thinking trace plus a few examples
    stream: bool = True  # streaming notices cancel between chunks and survives idle proxies
    structured_output: bool = True  # send the schema (enforced locally, ignored by the cloud)
    structured_mode: StructuredMode = "auto"  # how; structured_output False means "text"
    think: bool | str | None = None  # None: the model's default; "low"/"medium"/"high" or a bool

    @property
    def resolved_api(self) -> ApiKind:
        if self.api is not None:
            return self.api
        return "openai" if self.provider == "openai" else "native"

    @property
    def resolved_structured_mode(self) -> StructuredMode:
        return self.structured_mode if self.structured_output else "text"

    @property
    def resolved_model(self) -> str:
        return self.model.strip() or DEFAULT_MODELS.get(self.provider, "")

    @property
    def resolved_concurrency(self) -> int:
        return self.concurrency or DEFAULT_CONCURRENCY.get(self.provider, 2)

    @property
    def root_url(self) -> str:
        """The base URL without a trailing slash (and, for Ollama, without /api or /v1)."""
        url = (self.base_url.strip() or DEFAULT_BASE_URLS.get(self.provider, "")).rstrip("/")
        if self.provider == "openai":
            return url.removesuffix("/chat/completions")
        for suffix in ("/api", "/v1"):
            url = url.removesuffix(suffix)
        return url

    @property
    def chat_url(self) -> str:
        if self.provider == "openai":
            return f"{self.root_url}/chat/completions"
        path = "/api/chat" if self.resolved_api == "native" else "/v1/chat/completions"
        return f"{self.root_url}{path}"

    @property
    def models_url(self) -> str:
        if self.provider == "openai":
            return f"{self.root_url}/models"
        return f"{self.root_url}{'/api/tags' if self.resolved_api == 'native' else '/v1/models'}"

    @property
    def needs_key(self) -> bool:
        return self.provider == "ollama-cloud"

    def problems(self) -> list[str]:
        """What is wrong with these settings, in words for the person; empty when they can work."""
        found: list[str] = []
        if self.provider not in PROVIDERS:
            choices = ", ".join(PROVIDERS)
            found.append(f"Unknown provider {self.provider!r}; choose one of {choices}.")
        found += _url_problems(self.root_url)
        if self.provider == "openai" and self.resolved_api == "native":
            found.append("An OpenAI-compatible server needs api = openai.")
        if not self.resolved_model:
            found.append("Choose a model (the server's list shows the names it knows).")
        if self.concurrency is not None and not 1 <= self.concurrency <= 256:
            found.append("Concurrency must be between 1 and 256 requests at a time.")
        if not 0 <= self.temperature <= 2:
            found.append("Temperature must be between 0 and 2.")
        if self.read_timeout <= 0:
            found.append("The read timeout must be a positive number of seconds.")
        if self.structured_mode not in STRUCTURED_MODES:
            found.append(f"Structured output must be one of {', '.join(STRUCTURED_MODES)}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            found.append("Max tokens must be at least 1 (or empty for the server's default).")
        return found

    def validate(self) -> None:
        """Raise ConfigurationError listing every problem."""
        if problems := self.problems():
            raise ConfigurationError(" ".join(problems))

    def with_changes(self, **changes: Any) -> LLMSettings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LLMSettings:
        """Tolerates unknown keys (settings saved by a newer version) and drops any secret."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _url_problems(url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"The base URL {url!r} must look like http://host:port or https://host."]
    if parts.username or parts.password:
        return ["Put the API key in the key field, not in the base URL."]
    right = WRONG_HOSTS.get(parts.hostname.lower())
    if right:
        return [f"{parts.hostname} is not Ollama's API host: use {right} as the base URL."]
    return []


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
            ".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plain_http_key_warning(settings: LLMSettings, has_key: bool) -> str | None:
    """A warning when an API key would travel unencrypted to another machine; None when the
    URL is https, the server is on this machine (127.0.0.0/8, ::1, localhost) or no key is set."""
    parts = urlsplit(settings.root_url)
    host = parts.hostname or ""
    if not has_key or parts.scheme != "http" or not host or _is_loopback(host):
        return None
    return (f"The API key is sent unencrypted (plain http) to {host}: use an https base URL, "
            "or remove the key if this server needs none.")
