"""Ports for servers started a moment later come from below the ephemeral range, where
outgoing connections cannot take them first."""

from __future__ import annotations

import socket

from geocache.ports import LOWEST, ephemeral_low, free_port


def test_a_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    low = ephemeral_low()
    ports = {free_port() for _ in range(20)}
    assert all(LOWEST <= p < low for p in ports)
    assert len(ports) > 1  # picked at random, not one fixed port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))


def test_a_taken_port_is_not_handed_out() -> None:
    taken = []
    try:
        for _ in range(50):
            sock = socket.socket()
            sock.bind(("127.0.0.1", free_port()))
            taken.append(sock)
        assert len({s.getsockname()[1] for s in taken}) == 50
    finally:
        for sock in taken:
            sock.close()
