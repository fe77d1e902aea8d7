"""Errors a person can act on, as opposed to bugs. In core, so storage's rules can raise them."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix (bad input, unknown project): a message, not a traceback."""


class NotFoundError(UserError):
    """A project, file, job or run that does not exist."""
