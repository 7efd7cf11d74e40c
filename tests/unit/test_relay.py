"""The delay relay: delay within bounds, order kept, cut and heal, back-pressure, many
connections, and nothing left running after close. Real sockets on 127.0.0.1; every
wait has a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import threading
import time
from collections.abc import AsyncIterator

import pytest

from geocache.relay import BACKWARD, FORWARD, Relay, RelaySet

pytestmark = pytest.mark.timeout(30)

# Timers on a loaded CI machine fire late, never early: generous above, tight below.
LATE_S = 0.030
EARLY_S = 0.002


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> float:
    started = time.monotonic()
    writer.write(data)
    got = await asyncio.wait_for(reader.readexactly(len(data)), 5)
    assert got == data
    return time.monotonic() - started


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):  # a connection the relay reset
        await writer.wait_closed()


async def test_each_way_is_delayed_within_the_jitter(echo_port: int) -> None:
    async with Relay(target_port=echo_port, delay_ms=40, jitter_ms=5, seed=1) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
        rtts = [await _round_trip(reader, writer, b"ping %d" % i) for i in range(20)]
        await _close(writer)
    # Two one-way trips of 40 +- 5 ms each.
    assert min(rtts) >= 0.070 - EARLY_S
    assert max(rtts) <= 0.090 + LATE_S
    assert 0.075 <= statistics.median(rtts) <= 0.085 + LATE_S / 2


def test_uvloop_delivers_never_early() -> None:
    """uvloop's clock has 1 ms steps; the relay's due times must not inherit them."""
    import uvloop

    async def measure() -> list[float]:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        async with Relay(target_port=port, delay_ms=15) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
            rtts = []
            for i in range(30):
                rtts.append(await _round_trip(reader, writer, b"u%d" % i))
                await asyncio.sleep(0.0007 * (i % 3))  # land between the clock's steps
            await _close(writer)
        server.close()
        await server.wait_closed()
        return rtts

    rtts = uvloop.run(measure())
    assert min(rtts) >= 0.030
    assert statistics.median(rtts) <= 0.030 + LATE_S / 2


async def test_set_delay_applies_to_new_chunks(echo_port: int) -> None:
    async with Relay(target_port=echo_port, delay_ms=0) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
        fast = min([await _round_trip(reader, writer, b"a") for _ in range(5)])
        relay.set_delay(25)
        slow = await _round_trip(reader, writer, b"b")
        await _close(writer)
    assert fast < 0.010
    assert 0.050 - EARLY_S <= slow <= 0.050 + LATE_S
    with pytest.raises(ValueError):
        relay.set_delay(-1)


async def test_jitter_never_reorders_a_direction(echo_port: int) -> None:
    # Jitter nearly as large as the delay: chunks read 1 ms apart are due out of order,
    # so only the "never before the previous chunk" rule keeps the stream intact.
    async with Relay(target_port=echo_port, delay_ms=10, jitter_ms=9, seed=7) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
        sent = b""
        for i in range(150):
            message = b"<%d>" % i
            writer.write(message)
            sent += message
            await asyncio.sleep(0.001)  # separate reads at the relay, separate due times
        received = await asyncio.wait_for(reader.readexactly(len(sent)), 10)
        await _close(writer)
    assert received == sent
    assert relay.accepted == 1


async def test_cut_resets_connections_and_heal_lets_them_through(echo_port: int) -> None:
    async with Relay(target_port=echo_port, delay_ms=5) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
        await _round_trip(reader, writer, b"before")
        relay.cut()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), 2)
        await _close(writer)

        reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
        writer.write(b"while cut")
        with pytest.raises(ConnectionResetError):  # reset at once, nothing answered
            await asyncio.wait_for(reader.read(10), 2)
        await _close(writer)
        assert relay.accepted == 1  # the one before the cut

        relay.heal()
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
        await _round_trip(reader, writer, b"after")
        await _close(writer)


@pytest.mark.parametrize("direction", [FORWARD, BACKWARD])
async def test_a_one_way_cut_holds_data_until_heal(echo_port: int, direction: str) -> None:
    async with Relay(target_port=echo_port, delay_ms=5) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
        await _round_trip(reader, writer, b"warm")
        relay.cut_one_way(direction)
        writer.write(b"held")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.3)
        relay.heal()
        assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"
        await _close(writer)
    with pytest.raises(ValueError):
        relay.cut_one_way("sideways")


async def test_a_stalled_receiver_pushes_back_with_bounded_buffering() -> None:
    limit = 256 << 10
    chunk = 1 << 20
    read_now = asyncio.Event()
    received = 0

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        await read_now.wait()
        while data := await reader.read(1 << 16):
            received += len(data)
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    relay = Relay(target_port=port, delay_ms=1, max_queued_bytes=limit)
    await relay.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
        sent, most_held = 0, 0
        for _ in range(128):  # at most 128 MiB: far beyond every buffer on the way
            writer.write(b"x" * chunk)
            sent += chunk
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except TimeoutError:
                break
            most_held = max(most_held, relay.buffered_bytes)
        most_held = max(most_held, relay.buffered_bytes)
        assert sent < 128 * chunk, "the sender was never pushed back"
        # The queue, one read past the limit, and the receiver's transport buffer.
        assert most_held <= limit + 3 * (256 << 10), most_held

        read_now.set()  # the receiver reads again: everything arrives, resumed reading
        await asyncio.wait_for(writer.drain(), 10)
        writer.write_eof()
        deadline = time.monotonic() + 10
        while received < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert received == sent
        await _close(writer)
    finally:
        await relay.close()
        server.close()
        await server.wait_closed()


async def test_many_connections_at_once(echo_port: int) -> None:
    async with Relay(target_port=echo_port, delay_ms=20, seed=3) as relay:

        async def one(i: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
            for n in range(3):
                await _round_trip(reader, writer, b"conn %d msg %d;" % (i, n))
            await _close(writer)

        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 15)
        elapsed = time.monotonic() - started
    assert relay.accepted == 200
    # Three 40 ms round trips each, in parallel: one after another would take 24 s.
    assert elapsed < 3.0
    assert not relay.pipes


async def test_a_refused_target_resets_the_client() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]  # nothing listens once closed
    async with Relay(target_port=dead_port, delay_ms=5) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.listen_port)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), 2)
        await _close(writer)
        assert not relay.pipes


async def test_close_resets_clients_and_leaves_no_task(echo_port: int) -> None:
    relay = Relay(target_port=echo_port, delay_ms=200)
    await relay.start()
    conns = [await asyncio.open_connection("127.0.0.1", relay.listen_port) for _ in range(5)]
    for _, writer in conns:
        writer.write(b"in flight")  # queued in the relay for 200 ms
    await asyncio.sleep(0.05)
    assert relay.buffered_bytes > 0
    await relay.close()
    for reader, writer in conns:
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), 2)
        await _close(writer)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert not relay.pipes and relay.buffered_bytes == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", relay.listen_port)


def test_only_loopback_addresses() -> None:
    for host in ("0.0.0.0", "10.0.0.1", "::1", "example.com"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
            Relay(listen_host=host)
        with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
            Relay(target_host=host)
    Relay(listen_host="127.0.0.2", target_host="localhost")


def _sync_round_trip(addr: str, data: bytes) -> float:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = sock.recv(100)
            assert chunk, "closed early"
            got += chunk
        assert got == data
        return time.monotonic() - started


def _sync_echo_server() -> tuple[socket.socket, str]:
    """A one-connection-at-a-time echo server on a thread (for RelaySet's sync callers)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, contextlib.suppress(ConnectionResetError):  # RelaySet.stop resets
                while data := conn.recv(1 << 16):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"127.0.0.1:{listener.getsockname()[1]}"


def test_relay_set_runs_relays_for_synchronous_code() -> None:
    listener, target = _sync_echo_server()
    try:
        with RelaySet() as relays:
            near = relays.add(target, delay_ms=5, group="eu")
            far = relays.add(target, delay_ms=30, jitter_ms=2, group="us", seed=1)
            assert relays.routes("eu") == {target: near.address}
            assert relays.routes("us") == {target: far.address}
            assert relays.relay(target, "us") is far
            with pytest.raises(ValueError):
                relays.add(target, delay_ms=1, group="eu")
            assert 0.010 - EARLY_S <= _sync_round_trip(near.address, b"n") <= 0.010 + LATE_S
            assert 0.056 - EARLY_S <= _sync_round_trip(far.address, b"f") <= 0.064 + LATE_S
            relays.call(far.set_delay, 10)
            assert _sync_round_trip(far.address, b"f") <= 0.020 + LATE_S
            addresses = [near.address, far.address]
            thread = relays._thread
        assert thread is not None and not thread.is_alive()
        for addr in addresses:
            with pytest.raises(ConnectionRefusedError):
                _sync_round_trip(addr, b"gone")
    finally:
        listener.close()
