"""The data folder as the interfaces (GUI, CLI) see it; light enough for the first paint."""

from finetuneflow.core.project_summary import ProjectSummary
from finetuneflow.core.steps import ProgressFacts
from finetuneflow.storage.home import HOME_ENV, Home, default_home
from finetuneflow.storage.quick_read import read_progress, read_project_list

__all__ = ["HOME_ENV", "Home", "ProgressFacts", "ProjectSummary", "default_home",
           "progress_at_start", "project_at_start", "projects_at_start"]
MIN_ID_PREFIX = 4  # as the command line takes a project id


def projects_at_start(home: Home) -> list[ProjectSummary] | None:
    """The projects list for the window's first paint, before the database layer has loaded;
    None when the quick read cannot tell (the full open then says why)."""
    return read_project_list(home.db_path)


def progress_at_start(home: Home) -> dict[str, ProgressFacts]:
    """How far each project is, for the same first paint ({} when the quick read cannot tell:
    the Step column then fills in once the database is open)."""
    return read_progress(home.db_path, home.storage_dir) or {}


def project_at_start(home: Home, ref: str) -> ProjectSummary | None:
    """The project `ref` names (its id, exact name or an id prefix) for the first paint; None
    when the quick read cannot tell or the name is not one project's (the full open then
    finds it, or says why it cannot)."""
    ref = ref.strip()
    projects = projects_at_start(home) or []
    for matches in ([p for p in projects if p.id == ref], [p for p in projects if p.name == ref],
                    [p for p in projects if len(ref) >= MIN_ID_PREFIX and p.id.startswith(ref)]):
        if matches:
            return matches[0] if len(matches) == 1 else None
    return None
