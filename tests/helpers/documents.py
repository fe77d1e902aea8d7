"""Documents written at test time."""

from __future__ import annotations

from pathlib import Path


def write_books(folder: Path, count: int, paragraphs: int = 3000) -> list[Path]:
    """Text files `book-N.txt` that each take ingestion a noticeable while (distinct, so none
    is a duplicate of another)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"book-{index}.txt"
        path.write_text("\n\n".join(f"Book {index}, paragraph {n}: the river keeps its own "
                                    f"counsel and the mill turns {n * index} times."
                                    for n in range(paragraphs)), encoding="utf-8")
        paths.append(path)
    return paths
