"""Logging to a rotating file under the home folder, with secrets scrubbed from every record."""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from pathlib import Path

SECRET_ENV_VARS = ("OLLAMA_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
LOG_FILE_NAME = "finetuneflow.log"


def known_secrets() -> list[str]:
    """Secret values present in the environment; the keychain's are added by whoever reads them."""
    return [value for name in SECRET_ENV_VARS if len(value := os.environ.get(name, "")) >= 6]


def redact(text: str, secrets: list[str] | None = None) -> str:
    for secret in secrets if secrets is not None else known_secrets():
        text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    return _HF_TOKEN.sub("hf_***", text)


class RedactingFilter(logging.Filter):
    """Formats each record, then scrubs it: a secret can hide in args as well as in the message."""

    def __init__(self) -> None:
        super().__init__()
        self.extra_secrets: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = known_secrets() + self.extra_secrets
        record.msg = redact(record.getMessage(), secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        return True


REDACTOR = RedactingFilter()


# A log line that cannot be written (a full disk) is dropped, not printed as a traceback over
# the message that says what happened.
logging.raiseExceptions = False


def configure_logging(logs_dir: Path, level: int = logging.INFO) -> Path:
    """Send the app's logs to logs_dir/finetuneflow.log (rotated); return the file's path."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    path = logs_dir / LOG_FILE_NAME
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "finetuneflow", False)]:
        if Path(old.baseFilename) == path:  # type: ignore[attr-defined]
            return path
        root.removeHandler(old)  # the home folder moved (tests, "move storage")
        old.close()
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=5,
                                                   encoding="utf-8")
    handler.finetuneflow = True  # type: ignore[attr-defined]
    handler.addFilter(REDACTOR)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    return path
