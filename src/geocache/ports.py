"""Picking a free TCP port for a server started a moment later (the demo, tests, benches).

A port the kernel hands out for `bind(0)` comes from the ephemeral range, which every
outgoing connection draws its source port from too: on a busy machine (a demo with
relays, a test suite) one of those connections can take the port before the server
binds it. So ports are picked below that range, at random, checked free by binding.
"""

from __future__ import annotations

import random
import socket

HOST = "127.0.0.1"
# Below this, ports are typically reserved or well known.
LOWEST = 10_000
ATTEMPTS = 200


def ephemeral_low() -> int:
    """The bottom of the kernel's ephemeral port range (32768 where unknown)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = HOST) -> int:
    """A TCP port on `host` that was free a moment ago, outside the ephemeral range."""
    high = ephemeral_low()
    for _ in range(ATTEMPTS if high > LOWEST + 1000 else 0):
        port = random.randrange(LOWEST, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # fall back: any port
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
