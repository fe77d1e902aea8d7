"""Developer tool: autogenerate an Alembic revision from the models.

    python -m finetuneflow.storage.revision "what changed"
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from finetuneflow.storage.db import alembic_config, make_engine, upgrade_to_head


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    from alembic import command

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(Path(tmp) / "revision.db")
        upgrade_to_head(engine)  # compare the models against the current head schema
        with engine.connect() as connection:
            command.revision(alembic_config(connection), message=argv[0], autogenerate=True)
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
