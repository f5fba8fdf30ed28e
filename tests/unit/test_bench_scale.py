"""The counting in bench/scale.py (issue 10's load-and-fault benchmark): percentiles,
lost messages, duplicated tracker turns and customer-service sends, reply gaps."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.scale import (
    duplicated_sends,
    duplicated_turns,
    first_after,
    longest_gap,
    lost_messages,
    percentile,
)


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]  # 1 .. 100, shuffled order must not matter
    assert percentile(list(reversed(values)), 50) == 51.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_lost_counts_unstored_unanswered_and_undelivered() -> None:
    statuses: dict[str, str | None] = {
        "msg:1": "answered",
        "msg:2": "for_officer",
        "msg:3": "received",  # stored, never answered
    }
    lost = lost_messages(["msg:1", "msg:2", "msg:3", "msg:4"], statuses, undelivered=2)
    assert lost == ["msg:3", "msg:4", "outbox item not delivered", "outbox item not delivered"]
    assert lost_messages(["msg:1", "msg:2"], statuses, undelivered=0) == []


def test_duplicated_turns_only_count_turns_beyond_messages_sent() -> None:
    sent = {"a": 5, "b": 5, "c": 2}
    # a: one message given to Rasa twice; b: fewer turns (kept for an officer); c: missing
    assert duplicated_turns({"a": 6, "b": 3}, sent) == 1
    assert duplicated_turns({"a": 5, "b": 5, "c": 2}, sent) == 0


def test_duplicated_sends_compare_the_standins_records_with_the_outbox() -> None:
    queued = Counter({("a", "您好"): 1, ("b", "已转民警"): 2})
    assert duplicated_sends(Counter({("a", "您好"): 1, ("b", "已转民警"): 2}), queued) == 0
    assert duplicated_sends(Counter({("a", "您好"): 3, ("c", "x"): 1}), queued) == 3


def test_longest_gap_and_recovery_are_measured_inside_the_window() -> None:
    answers = [1.0, 2.0, 6.0, 7.0, 20.0]
    assert longest_gap(answers, 0.0, 10.0) == 4.0  # 2 -> 6
    assert longest_gap([], 3.0, 5.0) == 2.0  # no answer at all: the whole window
    assert longest_gap(answers, 6.5, 8.5) == 1.5  # 7 -> the window's end
    assert first_after(answers, 2.5) == 3.5
    assert first_after(answers, 20.0) is None
