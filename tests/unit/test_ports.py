"""jmt.ports: the one search for a range of free local ports (bench/scale.py and the e2e
launcher both use it)."""

from __future__ import annotations

import socket

import pytest

from jmt import ports


def test_a_range_is_free_and_below_the_ephemeral_ports() -> None:
    base = ports.free_port_range(4)
    assert ports.LOW <= base and base + 4 <= ports.HIGH
    held = []
    try:
        for port in range(base, base + 4):  # every port of the range can be bound
            probe = socket.socket()
            probe.bind(("127.0.0.1", port))
            held.append(probe)
    finally:
        for probe in held:
            probe.close()


def test_a_range_with_a_taken_port_is_never_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    busy = taken.getsockname()[1]
    choices = iter([busy - 1, busy + 1])  # the first range covers the busy port

    class Fixed:
        def randrange(self, low: int, high: int) -> int:
            return next(choices)

    monkeypatch.setattr(ports.random, "Random", Fixed)
    try:
        assert ports.free_port_range(2) == busy + 1
    finally:
        taken.close()


def test_nonsense_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        ports.free_port_range(0)
