"""Where a project's Train step trains: this computer, or a machine of Settings → Machines.

The choice is made on the Hardware page and kept per project (`projects.train_on`). Machines
live in machines.json, app-wide, and can be removed after a project chose one: such a choice
falls back to this computer and says so, until the person chooses again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetuneflow.services.machines import list_machines

if TYPE_CHECKING:
    from finetuneflow.services.context import AppContext


@dataclass(frozen=True)
class TrainLocation:
    machine: str | None  # the machine the next run trains on; None: this computer
    note: str = ""       # why the stored choice is not used, for the person; empty when it is

    def describe(self) -> str:
        return "this computer" if self.machine is None else self.machine


def train_location(context: AppContext, project_ref: str) -> TrainLocation:
    """The project's choice, if its machine still exists."""
    with context.transaction() as tx:
        chosen = tx.projects.settings(project_ref).train_on
    if chosen is None or chosen in {machine.name for machine in list_machines(context.home)}:
        return TrainLocation(chosen)
    return TrainLocation(None, f"The machine {chosen} was removed from Settings → Machines, "
                               "so this project trains on this computer. Choose where it "
                               "trains on the Hardware step.")


def choose_train_location(context: AppContext, project_ref: str, machine: str | None) -> None:
    """Keep the Hardware page's choice (a machine's name, or None for this computer)."""
    with context.transaction() as tx:
        tx.projects.save_train_on(project_ref, machine)
