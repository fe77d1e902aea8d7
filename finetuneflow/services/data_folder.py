"""The data folder as the interfaces (GUI, CLI) see it; light enough for the first paint."""

from finetuneflow.core.project_summary import ProjectSummary
from finetuneflow.core.steps import ProgressFacts
from finetuneflow.storage.home import HOME_ENV, Home, default_home
from finetuneflow.storage.quick_read import read_progress, read_project_list

__all__ = ["HOME_ENV", "Home", "ProgressFacts", "ProjectSummary", "default_home",
           "progress_at_start", "projects_at_start"]


def projects_at_start(home: Home) -> list[ProjectSummary] | None:
    """The projects list for the window's first paint, before the database layer has loaded;
    None when the quick read cannot tell (the full open then says why)."""
    return read_project_list(home.db_path)


def progress_at_start(home: Home) -> dict[str, ProgressFacts]:
    """How far each project is, for the same first paint ({} when the quick read cannot tell:
    the Step column then fills in once the database is open)."""
    return read_progress(home.db_path, home.storage_dir) or {}
