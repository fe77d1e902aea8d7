"""Duplicate detection at scale (run by hand): time per example, recall of planted variants.

    python -m tests.bench.dedup [--examples 100000] [--variants 0.05]

Questions are drawn from a Zipf vocabulary and a handful of shared openings ("What does the
text say about …"), the worst case for shingle-based methods. A share of them are variants of an
earlier question: one character changed, two dropped, a word inserted, or the case changed.
Recall is measured over the variants whose similarity to their original is >= the threshold.
"""

from __future__ import annotations

import argparse
import itertools
import random
import string
import sys
import time
from difflib import SequenceMatcher

from finetuneflow.core.generation.quality import (
    DUPLICATE_THRESHOLD,
    Deduplicator,
    content_hash,
    normalise,
)

OPENINGS = ["What does the text say about {}?", "How does {} work?", "What is {}?",
            "Why is {} important for {}?", "Which {} are used in {}?", "When did {} happen?",
            "According to the document, what {}?", "Who {}?"]
COMMON = ["the", "of", "a", "is", "in", "what", "how", "to", "and", "for", "which", "are"]


def make_questions(count: int, variant_share: float, seed: int) -> tuple[list[str], dict[int, int]]:
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10)))
                  for _ in range(50_000)]
    weights = list(itertools.accumulate(1 / (rank + 1) ** 1.05 for rank in range(50_000)))

    def phrase() -> str:
        return " ".join(rng.choices(vocabulary, cum_weights=weights)[0] if rng.random() < 0.6
                        else rng.choice(COMMON) for _ in range(rng.randint(2, 8)))

    def variant(text: str) -> str:
        chars, kind = list(text), rng.randrange(4)
        position = rng.randrange(len(chars) - 2)
        if kind == 0:
            chars[position] = rng.choice(string.ascii_lowercase)
        elif kind == 1:
            del chars[position : position + 2]
        elif kind == 2:
            chars.insert(position, " very")
        else:
            return text.upper()
        return "".join(chars)

    questions: list[str] = []
    originals: dict[int, int] = {}
    for index in range(count):
        if index > 10 and rng.random() < variant_share:
            originals[index] = rng.randrange(index)
            questions.append(variant(questions[originals[index]]))
        else:
            opening = rng.choice(OPENINGS)
            questions.append(opening.format(*(phrase() for _ in range(opening.count("{}")))))
    return questions, originals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.dedup")
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--variants", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    questions, originals = make_questions(args.examples, args.variants, args.seed)
    dedup = Deduplicator()
    started = time.perf_counter()
    flagged = {}
    for index, question in enumerate(questions):
        messages = [{"role": "user", "content": question}]
        found = dedup.check(index, content_hash(messages), question)
        if found is not None:
            flagged[index] = found
    seconds = time.perf_counter() - started
    close = [i for i, j in originals.items()
             if SequenceMatcher(None, normalise(questions[i]), normalise(questions[j]),
                                autojunk=False).ratio() >= DUPLICATE_THRESHOLD]
    caught = sum(1 for i in close if i in flagged)
    print(f"{args.examples} examples in {seconds:.1f} s ({seconds / args.examples * 1e6:.0f} µs "
          f"each); flagged {len(flagged)}")
    print(f"planted variants within the threshold: {len(close)}, caught {caught} "
          f"({caught / max(1, len(close)):.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
