"""The data folder as the interfaces (GUI, CLI) see it; light enough for the first paint."""

from finetuneflow.core.project_summary import ProjectSummary
from finetuneflow.storage.home import HOME_ENV, Home, default_home
from finetuneflow.storage.quick_read import read_project_list

__all__ = ["HOME_ENV", "Home", "ProjectSummary", "default_home", "projects_at_start"]


def projects_at_start(home: Home) -> list[ProjectSummary] | None:
    """The projects list for the window's first paint, before the database layer has loaded;
    None when the quick read cannot tell (the full open then says why)."""
    return read_project_list(home.db_path)
