"""Errors a person can act on, as opposed to bugs (defined in core: storage raises them too)."""

from __future__ import annotations

from finetuneflow.core.errors import NotFoundError, UserError

__all__ = ["NotFoundError", "UserError"]
