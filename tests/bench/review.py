"""The review table over 100,000 examples (run by hand).

    python -m tests.bench.review

Measures, on a real SQLite file with 100,000 examples:
  - one page of the table model (500 rows, keyset) ÷ the same rows read with plain sqlite3,
  - scrolling from the top to the last row (every page fetched) in seconds,
  - the stats panel (counts by status and reject kind, the lengths for the histogram),
  - a search over all examples.
Target: a page costs a few milliseconds at any scroll position, so scrolling stays smooth.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

ROWS = 100_000


def fill(context: object, project_id: str) -> None:
    from finetuneflow.storage.tables import DatasetExample, ExampleSource, ExampleSplit

    rng = random.Random(0)
    reasons = [None] * 8 + ["duplicate of (3, 1)", "ungrounded: the quote is not in the chunk",
                            "too long: 3000 tokens"]
    rows = []
    for i in range(ROWS):
        reason = rng.choice(reasons)
        rows.append(DatasetExample(
            project_id=project_id, split=ExampleSplit.TRAIN, source=ExampleSource.IMPORTED,
            messages=[{"role": "user", "content": f"Question {i} about shelf {i % 97}?"},
                      {"role": "assistant", "content": f"Answer {i}, " + "words " * 30}],
            status="rejected" if reason else "accepted", reject_reason=reason,
            content_hash=hashlib.sha256(str(i).encode()).hexdigest(),  # distinct hash keys
            token_count=rng.randint(40, 900)))
    with context.database.session() as session:  # type: ignore[attr-defined]
        session.add_all(rows)


def timed(call: object, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    os.environ["FINETUNEFLOW_HOME"] = str(Path(tempfile.mkdtemp()) / "home")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QModelIndex
    from PySide6.QtWidgets import QApplication

    from finetuneflow.gui.example_table import PAGE_SIZE, ExampleTableModel
    from finetuneflow.services.context import AppContext
    from finetuneflow.services.projects import ProjectService
    from finetuneflow.services.review import ExampleFilter, ReviewService

    QApplication([])
    context = AppContext.open()
    project_id = ProjectService(context).create("Bench").id
    started = time.perf_counter()
    fill(context, project_id)
    print(f"inserted {ROWS:,} examples in {time.perf_counter() - started:.1f} s")
    review = ReviewService(context)
    db = sqlite3.connect(context.home.root / "finetuneflow.db")
    middle = ROWS // 2

    def raw_page() -> None:
        db.execute("SELECT * FROM dataset_examples WHERE id > ? ORDER BY id LIMIT ?",
                   (middle, PAGE_SIZE)).fetchall()

    def model_page() -> None:
        review.page(project_id, ExampleFilter(), middle, PAGE_SIZE)

    raw, ours = timed(raw_page), timed(model_page)
    print(f"one page of {PAGE_SIZE} rows at row {middle:,}: {ours * 1000:.1f} ms; plain sqlite3 "
          f"{raw * 1000:.1f} ms; ratio {ours / raw:.1f}")

    model = ExampleTableModel(review, project_id)
    started = time.perf_counter()
    model.reload()
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
    scroll = time.perf_counter() - started
    pages = ROWS / PAGE_SIZE
    print(f"scroll top to bottom: {scroll:.2f} s for {pages:.0f} pages "
          f"({scroll / pages * 1000:.1f} ms a page), {model.rowCount():,} rows")
    print(f"stats panel: {timed(lambda: review.stats(project_id)) * 1000:.0f} ms")
    print(f"search 'shelf 42?': "
          f"{timed(lambda: review.count(project_id, ExampleFilter(search='shelf 42?'))) * 1000:.0f}"
          f" ms")
    print(f"filter rejected count: "
          f"{timed(lambda: review.count(project_id, ExampleFilter(status='rejected'))) * 1000:.0f}"
          f" ms")
    context.close()


if __name__ == "__main__":
    main()
