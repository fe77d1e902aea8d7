"""Review on a real SQLite file: pages by key, filters, search, edits and counts."""

from __future__ import annotations

import pytest

from finetuneflow.services.context import AppContext
from finetuneflow.services.datasets import DatasetService, reason_label
from finetuneflow.services.projects import ProjectService
from finetuneflow.services.review import ExampleFilter, ReviewService
from finetuneflow.storage.tables import (
    DatasetExample,
    ExampleSource,
    ExampleSplit,
    ExampleStatus,
)


def chat(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@pytest.fixture
def project_id(context: AppContext) -> str:
    project = ProjectService(context).create("Review")
    rows = [(chat(f"Question {i}?", f"Answer {i}."), None, 20 + i) for i in range(250)]
    rows += [(chat("Où est la bibliothèque ?", "Au deuxième étage."), None, 12),
             (chat("Dup?", "Dup."), "duplicate of (3, 1)", 9),
             (chat("Far?", "Far."), "ungrounded: the quote is not in the chunk (best match "
                                    "0.41)", 9),
             (chat("Long?", "Long."), "too long: 4000 tokens", 4000)]
    with context.database.session() as session:
        for messages, reason, tokens in rows:
            session.add(DatasetExample(
                project_id=project.id, split=ExampleSplit.TRAIN, messages=messages,
                status=ExampleStatus.REJECTED if reason else ExampleStatus.ACCEPTED,
                reject_reason=reason, content_hash=str(hash(str(messages)))[:64],
                token_count=tokens, source=ExampleSource.IMPORTED))
        session.add(DatasetExample(
            project_id=project.id, split=ExampleSplit.PREVIEW, messages=chat("P?", "P."),
            status=ExampleStatus.ACCEPTED, content_hash="p", source=ExampleSource.GENERATED))
    return project.id


def test_pages_follow_the_ids_and_cover_every_row_once(context: AppContext,
                                                       project_id: str) -> None:
    review = ReviewService(context)
    seen: list[int] = []
    while page := review.page(project_id, ExampleFilter(), seen[-1] if seen else 0, 100):
        seen += [row.id for row in page]
    assert len(seen) == len(set(seen)) == review.count(project_id, ExampleFilter()) == 254
    assert seen == sorted(seen)  # the preview row is left out unless asked for
    assert review.count(project_id, ExampleFilter(include_preview=True)) == 255


def test_filters_by_status_reason_and_text(context: AppContext, project_id: str) -> None:
    review = ReviewService(context)
    assert review.count(project_id, ExampleFilter(status="rejected")) == 3
    for reason in ("duplicate", "ungrounded", "too long"):
        rows = review.page(project_id, ExampleFilter(reason=reason))
        assert len(rows) == 1 and reason_label(rows[0].reject_reason) == reason
    found = review.page(project_id, ExampleFilter(search="bibliothèque"))
    assert [row.prompt for row in found] == ["Où est la bibliothèque ?"]
    assert review.count(project_id, ExampleFilter(search="question 1")) == 111  # 1, 10-19, 100+


def test_stats_count_kept_rejects_by_kind_and_lengths(context: AppContext,
                                                      project_id: str) -> None:
    stats = ReviewService(context).stats(project_id)
    assert (stats.accepted, stats.edited, stats.rejected) == (251, 0, 3)
    assert stats.rejected_by_reason == {"duplicate": 1, "ungrounded": 1, "too long": 1}
    assert stats.duplicates_removed == 1
    assert len(stats.token_lengths) == 251 and max(stats.token_lengths) == 269


def test_edit_reject_restore_delete(context: AppContext, project_id: str) -> None:
    review = ReviewService(context)
    first, second, third = (row.id for row in review.page(project_id, ExampleFilter(), 0, 3))
    review.edit(first, chat("Question 0, reworded?", "A better answer."), tokens=11)
    edited = review.rows({first})[first]
    assert (edited.status, edited.reply, edited.tokens) == ("edited", "A better answer.", 11)
    with pytest.raises(Exception, match="reply"):
        review.edit(first, chat("No answer?", "  "))
    review.reject([second, third])
    assert review.stats(project_id).rejected_by_reason["rejected in review"] == 2
    review.restore([third])
    review.delete([second])
    assert review.rows({second, third}) == {third: review.rows({third})[third]}
    files = DatasetService(context).export(project_id)
    assert files.train + files.eval == 251 - 1  # the deleted one is gone, the restored kept


@pytest.mark.parametrize(("reason", "label"), [
    ("near duplicate of (42, 0)", "near duplicate"),
    ("duplicate of (2, 1)", "duplicate"),
    ("ungrounded: the quote is not in the chunk (best match 0.71)", "ungrounded"),
    ("too long: 1500 tokens", "too long"),
    ("line 7: not valid JSON (Expecting value)", "not valid JSON"),
    ("ungrounded: the quote is not in the chunk (0.5); duplicate of (1, 2)", "ungrounded"),
    (None, "unspecified"),
])
def test_reasons_are_counted_by_kind(reason: str | None, label: str) -> None:
    assert reason_label(reason) == label
