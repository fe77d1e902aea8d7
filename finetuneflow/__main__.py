"""Entry point: no arguments opens the app; subcommands are the CLI (`trainer`, `worker` and
`read-dataset`: the children)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return main_gui()
    if argv[0] == "worker":  # the GUI's child for heavy work; no CLI parser needed
        from finetuneflow.services.worker_process import serve

        return serve()
    if argv[0] == "read-dataset":  # a large import's reader; no CLI parser needed
        from finetuneflow.services.dataset_reader import main as read_dataset

        return read_dataset()
    from finetuneflow.cli import run_cli

    return run_cli(argv)


def main_gui() -> int:
    from finetuneflow.gui.system_libraries import run_gui_if_it_can_start

    return run_gui_if_it_can_start()


if __name__ == "__main__":
    raise SystemExit(main())
