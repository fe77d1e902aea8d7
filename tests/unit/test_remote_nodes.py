"""Which node of a run over several machines brought it down, and rank 0's held error."""

from __future__ import annotations

from finetuneflow.core.child_protocol import ErrorEvent, LogEvent, encode
from finetuneflow.services.remote_nodes import HeldError, NodeEnd, culprit


def test_a_killed_node_is_the_cause_even_when_its_peer_was_seen_failing_first() -> None:
    """A rank whose peer was killed fails too (its collective breaks), maybe seen earlier."""
    ends = [NodeEnd("alpha", 1, at=10.0), NodeEnd("beta", None, at=10.4)]
    found = culprit(ends)
    assert found is not None and found.node == "beta"
    assert found.describe() == "the trainer on beta ended without finishing (it was killed)"


def test_otherwise_the_first_failure_seen_is_the_cause() -> None:
    ends = [NodeEnd("beta", 0, at=5.0), NodeEnd("gamma", 3, at=9.0), NodeEnd("alpha", 1, at=9.5)]
    found = culprit(ends)
    assert found is not None and found.node == "gamma"
    assert found.describe() == "the trainer on gamma ended without finishing (exit code 3)"


def test_nodes_that_all_ended_well_name_no_cause() -> None:
    assert culprit([NodeEnd("alpha", 0, at=1.0), NodeEnd("beta", 0, at=2.0)]) is None


def test_an_unreachable_node_is_a_failure_that_says_so() -> None:
    end = NodeEnd("beta", None, at=1.0, unreachable=True)
    assert end.failed and not end.killed
    assert end.describe() == "beta stopped answering over SSH"
    assert culprit([NodeEnd("alpha", 0, at=2.0), end]) == end


def test_rank_0s_error_waits_until_the_run_says_whose_it_was() -> None:
    passed: list[str] = []
    held = HeldError(passed.append)
    log = encode(LogEvent(step=1, total_steps=5, loss=1.0))
    error = encode(ErrorEvent(kind="internal", message="connection closed by peer"))
    held(log)
    held(error)
    assert passed == [log]
    held.release()
    assert passed == [log, error]
