"""The grounding score: the share of answers whose key facts appear in the source passage.

An answer's key facts are what a model invents when it makes things up: its numbers and its
names (runs of capitalised words). A number must appear in the passage as it is, word for word
after normalising ("1887" is not "1888"); a name goes through the generation's grounding
checker (core/generation/quality.is_grounded), which forgives a small slip ("Curie's" for
"Curie"). An answer is grounded when every key fact is found.

Limits, on purpose: a word that starts a sentence is not taken for a name ("The", but also a
lone "Paris" there), a number written in words in the passage ("twelve" for "12") is not found,
and an answer with no number or name is not checked at all and stays out of the share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from finetuneflow.core.generation.quality import is_grounded, normalise

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_SENTENCE_END = re.compile(r"(?:^|[.!?\n•*-])\s*$")
_NOT_NAMES = frozenset({"I"})


@dataclass(frozen=True)
class GroundingCheck:
    facts: tuple[str, ...]  # the answer's key facts
    missing: tuple[str, ...]  # those not found in the passage

    @property
    def grounded(self) -> bool | None:
        """Whether every key fact was found; None when the answer has none to check."""
        return not self.missing if self.facts else None


def key_facts(answer: str) -> list[str]:
    """The answer's numbers and names, each once, in order of appearance."""
    found = [(m.start(), m.group(0)) for m in _NUMBER.finditer(answer)]
    found += _names(answer)
    return list(dict.fromkeys(fact for _, fact in sorted(found)))


def _names(text: str) -> list[tuple[int, str]]:
    """Runs of capitalised words, less a word that only starts a sentence."""
    names: list[tuple[int, str]] = []
    run: list[re.Match[str]] = []
    for match in _WORD.finditer(text):
        joined = bool(run) and text[run[-1].end() : match.start()] == " "
        if not joined:
            names += _name_of(text, run)
            run = []
        if match.group(0)[0].isupper() and match.group(0) not in _NOT_NAMES:
            run.append(match)
        else:
            names += _name_of(text, run)
            run = []
    return names + _name_of(text, run)


def _name_of(text: str, run: list[re.Match[str]]) -> list[tuple[int, str]]:
    if run and _SENTENCE_END.search(text[: run[0].start()]):
        run = run[1:]
    if not run:
        return []
    return [(run[0].start(), text[run[0].start() : run[-1].end()])]


def check_grounding(answer: str, passage: str) -> GroundingCheck:
    facts = key_facts(answer)
    words = f" {normalise(passage)} "
    missing = [fact for fact in facts
               if not (f" {normalise(fact)} " in words if _NUMBER.fullmatch(fact)
                       else is_grounded(fact, passage))]
    return GroundingCheck(tuple(facts), tuple(missing))


@dataclass(frozen=True)
class GroundingShare:
    grounded: int  # answers whose key facts were all found
    checked: int  # answers with key facts
    unchecked: int  # answers with none, left out of the share

    @property
    def share(self) -> float | None:
        return self.grounded / self.checked if self.checked else None


def grounding_share(checks: Iterable[GroundingCheck]) -> GroundingShare:
    results = [check.grounded for check in checks]
    return GroundingShare(results.count(True), results.count(True) + results.count(False),
                          results.count(None))
