"""Typed errors of the LLM client: each says what happened and what the person can do.

`retryable` errors are retried with backoff inside the client; `stops_run` errors end a whole
generation run at once (every other chunk would fail the same way). Messages never contain the
API key: the client scrubs every text it puts into an error.
"""

from __future__ import annotations

from typing import ClassVar

FREE_MODEL_HINT = "gpt-oss:20b"
KEYS_URL = "https://ollama.com/settings/keys"
UPGRADE_URL = "https://ollama.com/upgrade"


class LLMError(Exception):
    """Base of every error the client raises."""

    retryable: ClassVar[bool] = False
    stops_run: ClassVar[bool] = False
    max_retries: ClassVar[int | None] = None  # None: as many as the retry policy allows

    def __init__(self, message: str, *, status: int | None = None, detail: str = "",
                 cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail  # the server's own words, when it gave any
        self._cause = cause

    def __str__(self) -> str:
        return self.message

    @property
    def cause(self) -> str:
        """A few words to group failures by ("timed out", "HTTP 502"), for run summaries."""
        if self._cause:
            return self._cause
        if self.status is not None:
            return f"HTTP {self.status}"
        return self.default_cause

    default_cause: ClassVar[str] = "failed"


class ConfigurationError(LLMError):
    """The settings cannot work: a wrong base URL, a redirect, a request the server rejects."""

    default_cause = "misconfigured"

    stops_run = True


class AuthError(LLMError):
    """401: the API key is missing, wrong or revoked."""

    default_cause = "API key rejected"

    stops_run = True


class ForbiddenError(LLMError):
    """403: the account may not use this model (plan), or cloud models are disabled."""

    default_cause = "no access"

    stops_run = True


class ModelNotFoundError(LLMError):
    """404 for the model: a typo, a retired model, or a local model that was never pulled."""

    default_cause = "unknown model"

    stops_run = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 404,
        detail: str = "",
        available: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.available = available


class QuotaExhaustedError(LLMError):
    """429 "usage limit": the plan's hourly/session/weekly allowance is spent; no retry."""

    stops_run = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        detail: str = "",
        window: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.window = window  # "hourly", "session", "daily", "weekly", "monthly" or None
        self.retry_after = retry_after


class RateLimitedError(LLMError):
    """A plain 429: too many requests right now."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.retry_after = retry_after


class ServerError(LLMError):
    """5xx: the server failed or is busy."""

    default_cause = "server error"

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.retry_after = retry_after


class RequestRejectedError(LLMError):
    """400 and other 4xx: the server refused this one request (too long a prompt, a bad field)."""

    default_cause = "request rejected"


class NetworkError(LLMError):
    """No usable answer arrived: connect error, timeout, dropped connection, cut stream."""

    default_cause = "network error"

    retryable = True


class StreamCutShortError(NetworkError):
    """The stream ended without saying it was finished (no finish_reason, no `done: true`):
    a server that dropped the request under load. Retried once, then the chunk is rejected."""

    max_retries = 1
    default_cause = "stream cut short"


class InvalidRequestError(RequestRejectedError):
    """The server called the request itself invalid (whatever the status, even a 500):
    retrying the same request cannot help, another request shape might."""

    default_cause = "request invalid"


class UnreachableError(NetworkError):
    """The server could not be reached at all (DNS, refused connection, connect timeout)."""

    default_cause = "could not connect"


class BadResponseError(LLMError):
    """The server answered, but not in a shape this client understands."""

    default_cause = "unreadable answer"


class AnswerUnreadableError(BadResponseError):
    """The answer cannot be read: over the size limit, a line over the line limit, nested too
    deep to parse. Asking again would bring the same, so the chunk is rejected with this
    reason and the run goes on. `raw` keeps the start of what came, for review."""

    default_cause = "unreadable answer"

    def __init__(self, message: str, *, reason: str, raw: str = "") -> None:
        super().__init__(message)
        self.reason = reason  # short, for the reject reason column
        self.raw = raw


class DeadlineError(NetworkError):
    """The request ran past its wall-clock deadline (an endless stream, a server dribbling
    bytes under the read timeout). Not retried: the same request would take as long."""

    retryable = False
    default_cause = "deadline passed"
class ContextTooSmallError(ConfigurationError):
    """A prompt, with room for its answer, does not fit the context the server reports."""

    default_cause = "prompt over the context size"

    def __init__(self, message: str, *, prompt_tokens: int, context_tokens: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.context_tokens = context_tokens
