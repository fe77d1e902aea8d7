"""Chunking must scale linearly: 10x the text may take at most 11x the time of 1x.

Run by hand (not collected by pytest):

    python tests/bench/chunking.py [--kb 300] [--tokenizer path/to/tokenizer.json] [--repeats 5]

The text is generated prose (several scripts, sentences, paragraphs, headings) from a fixed
vocabulary, so the 1x text is a prefix of the 10x one with the same statistics. With the shared
corpus present, the same ratio is also measured on War and Peace (a real text whose vocabulary
keeps growing, which costs the tokenizer's word cache more as the text grows). Exit status 1 when
a ratio is over the limit.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from finetuneflow.core.chunking import ChunkSettings, TokenCounter, chunk_text  # noqa: E402

LIMIT = 11.0
CORPUS_BOOK = ROOT.parent / "shared/corpus/txt/large_war-and-peace_utf8-bom_crlf.txt"

_VOCABULARY = (
    "the a of to and in that it is was for on are as with his they at be this from have or by "
    "one had not but what all were when we there can an your which their said if do will each "
    "about how up out them then she many some so these would other into has more her two like "
    "him see time could no make than first been its who now people my made over did down only "
    "way find use may water long little very after words called just where most know model "
    "document training storage language dataset chunk token adapter Straße über naïve café "
    "résumé Ångström déjà-vu 3.14 e.g. (brackets) “quoted” x² — 2024"
)
_WORDS = _VOCABULARY.split()
_OTHER_SENTENCES = [
    "敏捷的棕色狐狸跳过了懒狗。",
    "这是一个用于测试的句子！",
    "これは日本語の文です。",
    "مرحبا بالعالم؟ ",
    "नमस्ते दुनिया। ",
    "Привет, мир. ",
]


def generate_prose(chars: int, seed: int = 0) -> str:
    """About `chars` characters of varied prose; a longer text extends a shorter one."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < chars:
        paragraph = _paragraph(rng)
        if rng.random() < 0.08:
            paragraph = f"## {' '.join(rng.choices(_WORDS, k=4)).title()}\n\n{paragraph}"
        parts.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(parts)


def _paragraph(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(2, 8)):
        if rng.random() < 0.1:
            sentences.append(rng.choice(_OTHER_SENTENCES))
        else:
            words = " ".join(rng.choices(_WORDS, k=rng.randint(5, 25)))
            sentences.append(words.capitalize() + rng.choice([". ", "! ", "? ", ".\n"]))
    return "".join(sentences).strip()


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) that `action` took."""
    cpu, wall = time.process_time(), time.perf_counter()
    action()
    return time.process_time() - cpu, time.perf_counter() - wall


def measure(name: str, small: str, large: str, counter: TokenCounter, repeats: int) -> float:
    """Print the 10x/1x ratios of CPU time (the verdict) and wall time; return the CPU one.

    CPU time of this process is what the algorithm costs; wall time also counts whatever else
    the machine runs meanwhile. Each figure is the median of `repeats` runs, 1x and 10x runs
    interleaved so that load from elsewhere hits both alike.
    """
    settings = ChunkSettings(max_tokens=512, overlap_tokens=50)
    chunk_text(small, counter, settings)  # warm up: tokenizer caches, imports, allocator
    chunks = len(chunk_text(large, counter, settings))
    small_runs, large_runs = [], []
    for _ in range(repeats):
        small_runs.append(timed(lambda: chunk_text(small, counter, settings)))
        large_runs.append(timed(lambda: chunk_text(large, counter, settings)))
    print(
        f"{name}: 1x {len(small) / 1000:.0f} KB, 10x {len(large) / 1000:.0f} KB ({chunks} chunks)"
    )
    ratios = []
    for index, clock in enumerate(("cpu", "wall")):
        one = statistics.median(run[index] for run in small_runs)
        ten = statistics.median(run[index] for run in large_runs)
        ratios.append(ten / one)
        print(
            f"  {clock:>4}: 1x {one:.3f} s, 10x {ten:.3f} s, ratio {ten / one:.2f} (limit {LIMIT})"
        )
    return ratios[0]


def load_counter(tokenizer: Path | None) -> TokenCounter:
    if tokenizer is not None:
        return TokenCounter.from_model_dir(tokenizer)
    from tests.helpers.tiny_model import cached_tiny_model

    return TokenCounter.from_model_dir(cached_tiny_model())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=300, help="size of the 1x text in KB")
    parser.add_argument("--tokenizer", type=Path, help="model folder or tokenizer.json")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    counter = load_counter(args.tokenizer)

    size = args.kb * 1000
    large = generate_prose(10 * size)
    ratios = [measure("generated prose", large[:size], large, counter, args.repeats)]
    if CORPUS_BOOK.exists():
        book = CORPUS_BOOK.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
        small_book = book[: len(book) // 10]
        ratios.append(measure("War and Peace", small_book, book, counter, args.repeats))
    worst = max(ratios)
    print(f"worst ratio {worst:.2f}: {'OK' if worst <= LIMIT else 'TOO SLOW'}")
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
