"""Ports for child processes: free, distinct, and out of the way of outgoing connections."""

from __future__ import annotations

import socket

import pytest

from shared import embedded
from shared.embedded import free_port, free_ports

pytestmark = pytest.mark.unit


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    """Every port can be listened on, none repeats, none is one a connection may take."""
    low = embedded._ephemeral_low()
    ports = free_ports(40)
    assert len(set(ports)) == 40
    for port in ports:
        assert embedded._PORTS_FROM <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen()


def test_a_listening_port_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the range narrowed to one taken port and one free one, only the free one comes."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy, busy, busy + 1] * 100)
        monkeypatch.setattr(embedded.random.SystemRandom, "randrange",
                            lambda self, a, b: next(picks))
        monkeypatch.setattr(embedded, "_ephemeral_low", lambda: 65_000)
        assert free_port() == busy + 1


def test_without_room_below_the_range_the_kernel_chooses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ephemeral range starting near the floor falls back to bind(0), still distinct."""
    monkeypatch.setattr(embedded, "_ephemeral_low", lambda: embedded._PORTS_FROM + 10)
    ports = free_ports(5)
    assert len(set(ports)) == 5
