"""The sample project's hand-written dataset: well formed, and every pair grounded in its document.

resources/samples/willow-lane-dataset.jsonl holds question-answer pairs written by hand for the
three sample documents, so a person can train the sample without an LLM to write examples.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from finetuneflow.core.generation.engine import QualityOptions
from finetuneflow.core.generation.quality import (
    DUPLICATE_THRESHOLD,
    grounding_score,
    normalise,
    similarity,
)
from finetuneflow.core.generation.tasks import TASK_SPECS, TaskType
from finetuneflow.core.ingest.loader import load_document
from finetuneflow.core.resources import resource_path
from finetuneflow.services.samples import SAMPLE_FILES

DATASET = resource_path("samples", "willow-lane-dataset.jsonl")
ROLES = ["system", "user", "assistant"]
MIN_ROWS = 55
QUOTE_WORDS = (5, 30)
# Words that carry no content: sharing them says nothing about agreeing.
STOPWORDS = frozenset({
    "the", "and", "for", "are", "but", "not", "you", "your", "our", "with", "from", "that",
    "this", "they", "them", "their", "there", "when", "what", "which", "who", "whom", "how",
    "why", "can", "may", "must", "will", "should", "does", "did", "has", "have", "had", "was",
    "were", "its", "any", "all", "each", "every", "only", "also", "into", "onto", "just", "than",
    "then", "too", "very"
})


def _rows() -> list[dict[str, Any]]:
    lines = DATASET.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


ROWS = _rows()


def _id(row: dict[str, Any]) -> str:
    return row["messages"][1]["content"][:60]


@cache
def _document_text(name: str) -> str:
    """The text the app extracts (and normalises) from a sample document."""
    document = load_document(resource_path("samples", name))
    assert document.status == "ok", document.message
    return document.text


def _content_words(text: str) -> set[str]:
    return {
        word for word in normalise(text).split()
        if word.isdigit() or (len(word) >= 3 and word not in STOPWORDS)
    }


def test_the_dataset_is_well_formed() -> None:
    assert len(ROWS) >= MIN_ROWS
    system_prompt = TASK_SPECS[TaskType.QA].default_system_prompt
    for row in ROWS:
        assert set(row) == {"messages", "source", "quote"}, row
        assert [message["role"] for message in row["messages"]] == ROLES, row
        assert all(message["content"].strip() for message in row["messages"]), row
        assert row["messages"][0]["content"] == system_prompt
        assert row["source"] in SAMPLE_FILES, row
        assert row["quote"].strip(), row


def test_every_document_has_its_share_of_pairs() -> None:
    counts = {name: sum(row["source"] == name for row in ROWS) for name in SAMPLE_FILES}
    assert all(count >= 15 for count in counts.values()), counts


def test_questions_are_distinct() -> None:
    questions = [normalise(row["messages"][1]["content"]) for row in ROWS]
    assert len(set(questions)) == len(questions)
    # Nor near duplicates, by the measure the generation engine's deduplicator uses.
    for index, question in enumerate(questions):
        for other in questions[index + 1 :]:
            assert similarity(question, other) < DUPLICATE_THRESHOLD, (question, other)


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_quote_is_verbatim_in_its_document(row: dict[str, Any]) -> None:
    # Exact, line breaks included: the PDF's text keeps the layout's line breaks, so a quote
    # that runs over two lines carries the "\n" the loader produced.
    quote = row["quote"]
    assert QUOTE_WORDS[0] <= len(quote.split()) <= QUOTE_WORDS[1], quote
    assert quote in _document_text(row["source"]), quote


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_quote_passes_the_grounding_check(row: dict[str, Any]) -> None:
    threshold = QualityOptions().grounding_threshold  # what the generation engine applies
    assert grounding_score(row["quote"], _document_text(row["source"])) >= threshold


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_answer_shares_content_words_with_its_quote(row: dict[str, Any]) -> None:
    # A modest check, not a proof of agreement: an answer about something else entirely (a
    # pair whose quote was swapped, or an answer that ignores its quote) shares no content
    # words with it. Two shared words (or all of them, for a quote with fewer) is enough;
    # rephrasing and answers that add a fact from the next sentence still pass.
    quote_words = _content_words(row["quote"])
    shared = quote_words & _content_words(row["messages"][2]["content"])
    assert len(shared) >= min(2, len(quote_words)), (row["quote"], shared)
