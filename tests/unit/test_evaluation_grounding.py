"""The grounding score: an answer's numbers and names looked up in the source passage."""

from __future__ import annotations

import pytest

from finetuneflow.core.evaluation.grounding import (
    GroundingCheck,
    GroundingShare,
    check_grounding,
    grounding_share,
    key_facts,
)

PASSAGE = (
    "The tower was designed by the company of Gustave Eiffel and finished on 31 March 1889. "
    "It is 330 metres tall and weighs about 7,300 tonnes. Marie Curie's laboratory stood "
    "across the Seine."
)


@pytest.mark.parametrize(
    ("answer", "facts"),
    [
        ("The Eiffel Tower was finished in 1889 by Gustave Eiffel.",
         ["Eiffel Tower", "1889", "Gustave Eiffel"]),
        ("It weighs 7,300 tonnes and is 3.5 km away.", ["7,300", "3.5"]),
        ("According to NASA, the answer is: Apollo 11.", ["NASA", "Apollo", "11"]),
        ("Paris is big. I think Marie Curie lived there.", ["Marie Curie"]),
        ("yes, it is tall", []),
        ("Η Αθήνα ιδρύθηκε από τον Κέκροπα.", ["Αθήνα", "Κέκροπα"]),  # Η: the article
    ],
)
def test_key_facts_are_numbers_and_names(answer: str, facts: list[str]) -> None:
    assert key_facts(answer) == facts


def test_a_repeated_fact_is_listed_once() -> None:
    assert key_facts("In 1889 it opened; by 1889 it was famous.") == ["1889"]


def test_an_answer_from_the_passage_is_grounded() -> None:
    check = check_grounding("It was finished in 1889 by Gustave Eiffel, 330 metres tall.",
                            PASSAGE)
    assert check == GroundingCheck(("1889", "Gustave Eiffel", "330"), ())
    assert check.grounded is True


def test_an_invented_number_is_not_grounded() -> None:
    check = check_grounding("It was finished in 1888 and weighs 7,300 tonnes.", PASSAGE)
    assert check.missing == ("1888",)
    assert check.grounded is False
    # A number that is only part of one in the passage is not there either.
    assert check_grounding("It is 33 metres tall.", PASSAGE).missing == ("33",)


def test_an_invented_name_is_not_grounded_but_a_slip_is_forgiven() -> None:
    assert check_grounding("It was built by Thomas Edison.", PASSAGE).missing == ("Thomas Edison",)
    assert check_grounding("Its designer was Gustav Eiffel.", PASSAGE).grounded is True
    assert check_grounding("Near it was Marie Curie's lab.", PASSAGE).grounded is True


def test_an_answer_without_key_facts_is_not_checked() -> None:
    check = check_grounding("It is very tall and made of iron.", PASSAGE)
    assert check.facts == () and check.grounded is None


def test_the_share_counts_only_checked_answers() -> None:
    checks = [check_grounding(answer, PASSAGE) for answer in (
        "Finished in 1889.",  # grounded
        "Designed by Gustave Eiffel, 330 metres.",  # grounded
        "Finished in 1901.",  # not
        "It is tall.",  # nothing to check
    )]
    share = grounding_share(checks)
    assert share == GroundingShare(grounded=2, checked=3, unchecked=1)
    assert share.share == pytest.approx(2 / 3)
    assert grounding_share([]).share is None
