"""Secrets (the LLM API key, a Hugging Face token): the environment first, then the OS keychain.

They are never written to the database, a log, an export or a report; every value read here is
also handed to the log redactor.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os

from finetuneflow.services.errors import UserError
from finetuneflow.services.logs import REDACTOR

log = logging.getLogger(__name__)
KEYRING_SERVICE = "FineTuneFlow"


class Secret(enum.Enum):
    LLM_API_KEY = ("llm-api-key", "OLLAMA_API_KEY")
    HF_TOKEN = ("hf-token", "HF_TOKEN")

    @property
    def keyring_name(self) -> str:
        return self.value[0]

    @property
    def env_var(self) -> str:
        return self.value[1]


def _remember_for_redaction(value: str) -> str:
    if value not in REDACTOR.extra_secrets:
        REDACTOR.extra_secrets.append(value)
    return value


def get_secret(secret: Secret) -> str | None:
    value = os.environ.get(secret.env_var) or _keyring_get(secret)
    return _remember_for_redaction(value) if value else None


def secret_source(secret: Secret) -> str | None:
    """Where the secret comes from ("environment", "keychain"), for the settings page."""
    if os.environ.get(secret.env_var):
        return "environment"
    return "keychain" if _keyring_get(secret) else None


def set_secret(secret: Secret, value: str) -> None:
    import keyring
    from keyring.errors import KeyringError

    value = value.strip()
    if not value:
        delete_secret(secret)
        return
    try:
        keyring.set_password(KEYRING_SERVICE, secret.keyring_name, value)
    except KeyringError as error:
        raise UserError(f"This computer has no usable keychain ({type(error).__name__}): "
                        f"set {secret.env_var} in the environment instead.") from None
    _remember_for_redaction(value)


def delete_secret(secret: Secret) -> None:
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    # Nothing stored, or no keychain: either way there is nothing left to delete.
    with contextlib.suppress(PasswordDeleteError, KeyringError):
        keyring.delete_password(KEYRING_SERVICE, secret.keyring_name)


def _keyring_get(secret: Secret) -> str | None:
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(KEYRING_SERVICE, secret.keyring_name)
    except KeyringError as error:
        log.warning("keychain unavailable: %s", type(error).__name__)
        return None
