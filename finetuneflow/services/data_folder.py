"""The data folder as the interfaces (GUI, CLI) see it; light enough for the first paint."""

from finetuneflow.storage.home import HOME_ENV, Home, default_home

__all__ = ["HOME_ENV", "Home", "default_home"]
