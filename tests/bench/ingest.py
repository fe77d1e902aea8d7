"""Ingestion speed against the plain libraries, measured in the same run.

    python -m tests.bench.ingest [--repeats N]

Prints, for the corpus files the plain library reads:
  (1) PDF:  our load_document + chunk_text, pages/s  ÷  pypdf PdfReader(...).pages[i]
            .extract_text() + one tokenizer encode of the text (the tiny test model's BPE)
  (2) DOCX: our load_document, files/s  ÷  python-docx paragraph + table cell text
(Chunking's scaling with text length is measured by tests/bench/chunking.py.)
A ratio of 1.0 means no overhead; the target is >= 0.9. For each file, each side runs
--repeats times, interleaved; the best CPU times per file are summed and compared (the least
disturbed by other processes).
pypdf's loggers run without the rate limit for the baseline and with it for ours.
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docx
from pypdf import PdfReader

from finetuneflow.core.chunking import ChunkSettings, TokenCounter, chunk_text
from finetuneflow.core.ingest import Document, load_document
from finetuneflow.core.ingest.pdflog import install_filter
from tests.helpers.tiny_model import cached_tiny_model

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
TARGET = 0.9


@dataclass(frozen=True)
class Result:
    name: str
    units: float  # pages or files per run
    unit: str
    ours_s: float
    plain_s: float

    @property
    def ratio(self) -> float:
        """Our throughput divided by the plain library's (= plain time / our time)."""
        return self.plain_s / self.ours_s

    def line(self) -> str:
        verdict = "ok" if self.ratio >= TARGET else f"BELOW TARGET {TARGET}"
        return (
            f"{self.name}: ours {self.units / self.ours_s:8.1f} {self.unit}/s, "
            f"plain {self.units / self.plain_s:8.1f} {self.unit}/s, "
            f"ratio {self.ratio:.3f} ({verdict})"
        )


def corpus_files(kind: str) -> list[Path]:
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [CORPUS / row["file"] for row in rows if row["kind"].startswith(kind + "/")]


# Plain-library baselines ------------------------------------------------------------------


COUNTER = TokenCounter.from_model_dir(cached_tiny_model())


def plain_pdf_pages(path: Path) -> int:
    reader = PdfReader(path)
    text = "\n".join(reader.pages[i].extract_text() for i in range(len(reader.pages)))
    COUNTER.count(text)
    return len(reader.pages)


def ingest_and_chunk(path: Path) -> Document:
    document = load_document(path)
    chunk_text(document.text, COUNTER, ChunkSettings())
    return document


def plain_docx_text(path: Path) -> int:
    document = docx.Document(str(path))
    texts = [paragraph.text for paragraph in document.paragraphs]
    texts += [cell.text for table in document.tables for row in table.rows for cell in row.cells]
    return sum(map(len, texts))


def readable_by_plain(paths: list[Path], plain: Callable[[Path], int]) -> list[Path]:
    """The files the plain library handles without help (no password, no repair)."""
    readable = []
    for path in paths:
        try:
            if path.suffix == ".pdf" and PdfReader(path).is_encrypted:
                continue
            if plain(path) > 0:
                readable.append(path)
        except Exception:  # a file the baseline cannot read is not a fair comparison
            continue
    return readable


# Timing -----------------------------------------------------------------------------------


def timed(run: Callable[[], object]) -> float:
    """CPU seconds of this process: other processes on a busy machine do not count."""
    started = time.process_time()
    run()
    return time.process_time() - started


def detach_rate_limit() -> None:
    """Run the baseline with pypdf's loggers as the library leaves them."""
    limiter = install_filter()
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("pypdf") and isinstance(logger, logging.Logger):
            logger.removeFilter(limiter)


def compare(
    name: str,
    paths: list[Path],
    ours: Callable[[Path], Document],
    plain: Callable[[Path], int],
    unit: str,
    units: float,
    repeats: int,
) -> tuple[Result, list[Document]]:
    """Per file, the best of ``repeats`` interleaved runs of each side; then the sums."""
    documents: list[Document] = []
    ours_s = plain_s = 0.0
    for path in paths:
        documents.append(ours(path))  # warm up imports and caches on both sides
        detach_rate_limit()
        plain(path)
        best_ours = best_plain = float("inf")
        for _ in range(repeats):
            detach_rate_limit()
            best_plain = min(best_plain, timed(lambda path=path: plain(path)))
            best_ours = min(best_ours, timed(lambda path=path: ours(path)))
        ours_s += best_ours
        plain_s += best_plain
    return Result(name, units, unit, ours_s, plain_s), documents


def bench_pdf(repeats: int) -> tuple[Result, list[Document]]:
    paths = readable_by_plain(corpus_files("pdf"), plain_pdf_pages)
    pages = sum(len(PdfReader(path).pages) for path in paths)
    print(f"PDF:  {len(paths)} files, {pages} pages")
    return compare("(1) PDF ", paths, ingest_and_chunk, plain_pdf_pages, "pages", pages,
                   repeats)


def bench_docx(repeats: int) -> tuple[Result, list[Document]]:
    paths = readable_by_plain(corpus_files("docx"), plain_docx_text)
    print(f"DOCX: {len(paths)} files")
    return compare("(2) DOCX", paths, load_document, plain_docx_text, "files", len(paths),
                   repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not CORPUS.is_dir():
        raise SystemExit(f"no corpus at {CORPUS}")
    # Records are created and handled on both sides, as in the app; nothing is printed.
    logging.basicConfig(level=logging.WARNING, handlers=[logging.NullHandler()])

    pdf, _ = bench_pdf(args.repeats)
    word, _ = bench_docx(args.repeats)
    print()
    for result in (pdf, word):
        print(result.line())


if __name__ == "__main__":
    main()
