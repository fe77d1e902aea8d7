"""A step the person has not done yet, as a cause: each interface words what to do about it.

The services raise `MissingStepError(step, cause, gui_hint)`; its text is the GUI's words (the
pages show `str(error)`), while the command line names the command to run (cli/status.py).
"""

from __future__ import annotations

import enum

from finetuneflow.services.errors import UserError


class NextStep(enum.StrEnum):
    MODEL = "model"  # choose a base model
    INGEST = "ingest"  # add documents (or import a dataset)
    PREVIEW = "preview"  # try the LLM on a few chunks
    GENERATE = "generate"  # the full generation
    TRAIN = "train"
    EXPORT = "export"
    CHAT = "chat"  # everything is done: try the model


class MissingStepError(UserError):
    def __init__(self, step: NextStep, cause: str, gui_hint: str,
                 project_id: str | None = None) -> None:
        super().__init__(gui_hint)
        self.step = step
        self.cause = cause  # what is missing, in words for any interface
        self.project_id = project_id


def missing_model(project_id: str | None = None) -> MissingStepError:
    return MissingStepError(NextStep.MODEL, "No base model is chosen",
                            "Choose a base model first (the Model step).", project_id)


def missing_chunks(project_id: str | None = None) -> MissingStepError:
    return MissingStepError(NextStep.INGEST, "The project has no chunks yet",
                            "There are no chunks yet: add documents in the Data step first.",
                            project_id)


def missing_finished_run(project_id: str | None = None) -> MissingStepError:
    return MissingStepError(NextStep.TRAIN, "The project has no finished training run",
                            "There is no finished training run to export: train the model "
                            "first (the Train step).", project_id)
