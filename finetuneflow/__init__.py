"""FineTuneFlow: turn your documents into a fine-tuned language model, locally."""

__version__ = "0.1.0"
