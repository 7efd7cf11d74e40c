"""PeerClient alone: a real client against a scripted peer (sim.fakes), in virtual time.

The client reads the event loop's clock, so on `VirtualTimeLoop` its timeouts, its
reconnect backoff and `failed_recently` play out in virtual time, without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from geocache.cluster.peers import (
    AUTH_BACKOFF_MAX_MS,
    FAILED_WINDOW_S,
    RECONNECT_BACKOFF_MS,
    HandshakeStats,
    PeerClient,
    PeerError,
    Peers,
    encode_request,
)
from geocache.protocol.types import Error
from sim.fakes import HANG, FakePeer
from sim.loop import VirtualTimeLoop

T = TypeVar("T")
SECRET = "secret"


def run(main: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop(limit_s=60)
    try:
        result = loop.run_until_complete(main)
        assert loop.errors == [], loop.errors  # nothing failed unseen
        return result
    finally:
        loop.close()


def client_of(peer: FakePeer, secret: str = SECRET) -> PeerClient:
    return PeerClient("peer:7379", "me", secret, dial=peer.dial)


def echo(argv: list[bytes]) -> object:
    return HANG if argv[0] == b"HANG" else argv[-1]


def now() -> float:
    return asyncio.get_running_loop().time()


def test_requests_are_pipelined_on_one_connection_and_answered_in_order() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer)
        replies = await client.pipeline([("ECHO", b"a"), ("ECHO", b"b"), ("ECHO", b"c")])
        assert replies == [b"a", b"b", b"c"]
        writes_before = len(peer.writes)
        # Requests made in the same loop iteration leave together, in one write.
        many = await asyncio.gather(*(client.call("ECHO", b"%d" % i) for i in range(50)))
        assert many == [b"%d" % i for i in range(50)]
        assert len(peer.writes) == writes_before + 1
        assert peer.dials == 1 and client.connected

    run(main())


def test_a_request_encoded_in_chunks_arrives_as_the_command_it_names() -> None:
    peer = FakePeer(SECRET, lambda argv: len(argv))
    parsed = [b"SET", b"k", b"v" * 100, b""]  # a client's command, forwarded as parsed

    async def main() -> None:
        client = client_of(peer)
        request = encode_request(("GC.FWD", 2, 12345), parsed)
        assert await client.call_encoded(request) == 7
        assert peer.received[-1].argv == [b"GC.FWD", b"2", b"12345", *parsed]
        assert any(chunk is parsed[2] for chunk in request)  # the value itself, not a copy
        # Two in one turn leave in one write, after the handshake's.
        writes = len(peer.writes)
        both = [client.call_encoded(encode_request(("ECHO",), [b"x"])) for _ in range(2)]
        assert await asyncio.gather(*both) == [2, 2]
        assert len(peer.writes) == writes + 1

    run(main())


def test_an_error_reply_is_a_value_not_an_exception() -> None:
    peer = FakePeer(SECRET, lambda argv: Error("ERR nope"))

    async def main() -> None:
        reply = await client_of(peer).call("GC.APPLY", b"k")
        assert isinstance(reply, Error) and str(reply) == "ERR nope"

    run(main())


def test_the_secret_is_proven_before_any_request_leaves() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer)
        # Many callers at once before the connection exists: none overtakes GC.AUTH.
        replies = await asyncio.gather(*(client.call("ECHO", b"%d" % i) for i in range(20)))
        assert replies == [b"%d" % i for i in range(20)]
        client.send_nowait("GC.SWIM", b"x")
        await asyncio.sleep(0.01)

    run(main())
    assert peer.commands()[:2] == [b"GC.HELLO", b"GC.AUTH"]
    assert all(r.authed for r in peer.received[2:])
    assert len(peer.received) == 2 + 20 + 1


def test_callers_arriving_during_the_handshake_wait_for_it() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer)
        calls = []
        # The dial, the challenge and the proof take a delay each: callers arrive
        # before the connection exists, while it is open but unproven, and after.
        for i in range(20):
            calls.append(asyncio.ensure_future(client.call("ECHO", b"%d" % i)))
            client.send_nowait("GC.SWIM", b"%d" % i)
            await asyncio.sleep(peer.delay_s / 4)
        assert await asyncio.gather(*calls) == [b"%d" % i for i in range(20)]

    run(main())
    assert peer.commands()[:2] == [b"GC.HELLO", b"GC.AUTH"]
    assert all(r.authed for r in peer.received[2:])
    assert b"GC.HELLO" not in peer.commands()[2:]  # one connection, one handshake


def test_a_wrong_secret_fails_the_connect_and_sends_nothing_else() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer, secret="wrong")
        with pytest.raises(PeerError, match="cannot connect"):
            await client.call("ECHO", b"a")
        assert not client.connected and client.failed_recently()

    run(main())
    # The peer's proof did not check out with this secret: the client sent it nothing more.
    assert peer.commands() == [b"GC.HELLO"]


def test_a_request_that_times_out_marks_the_peer_failed_for_a_while() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer)
        assert await client.call("ECHO", b"a") == b"a"
        assert not client.failed_recently()
        started = now()
        with pytest.raises(PeerError, match="no answer in 100 ms"):
            await client.call("HANG", timeout_ms=100)
        assert now() - started == pytest.approx(0.1, abs=0.002)
        # Hung, not disconnected: the connection stays, and the peer counts as down.
        assert client.connected and client.failed_recently()
        await asyncio.sleep(FAILED_WINDOW_S)
        assert not client.failed_recently()

    run(main())


def test_request_answers_a_callback_as_call_encoded_answers_its_caller() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer)
        loop = asyncio.get_running_loop()
        answers: list[asyncio.Future[object]] = [loop.create_future() for _ in range(4)]
        # Not connected yet: it connects first. The answer never comes from the call.
        client.request(encode_request(("ECHO",), [b"a"]), 1000, answers[0].set_result)
        assert not answers[0].done()
        assert await answers[0] == b"a"
        # A hung peer fails the request at its timeout and counts as down, as a
        # timed-out call does.
        started = now()
        client.request(encode_request(("HANG",), []), 100, answers[1].set_result)
        failed = await answers[1]
        assert isinstance(failed, PeerError) and "no answer in 100 ms" in str(failed)
        assert now() - started == pytest.approx(0.1, abs=0.002)
        assert client.connected and client.failed_recently()
        # A lost connection fails what is in flight at once.
        client.request(encode_request(("HANG",), []), 10_000, answers[2].set_result)
        await asyncio.sleep(0.01)
        peer.drop()
        dropped = await answers[2]
        assert isinstance(dropped, PeerError) and "connection lost" in str(dropped)
        # The next one reconnects, after the backoff; its answer clears the failure.
        await asyncio.sleep(RECONNECT_BACKOFF_MS / 1000 + 0.01)
        client.request(encode_request(("ECHO",), [b"b"]), 1000, answers[3].set_result)
        assert await answers[3] == b"b"
        assert not client.failed_recently()

    run(main())


def test_an_answer_clears_the_failure() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer)
        peer.refuse = True
        with pytest.raises(PeerError):
            await client.call("ECHO", b"a")
        assert client.failed_recently()
        peer.refuse = False
        await asyncio.sleep(RECONNECT_BACKOFF_MS / 1000)
        assert await client.call("ECHO", b"b") == b"b"
        assert not client.failed_recently()

    run(main())


def test_a_lost_connection_fails_everything_in_flight_at_once() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer)
        await client.call("ECHO", b"a")
        calls = [asyncio.ensure_future(client.call("HANG", timeout_ms=10_000)) for _ in range(3)]
        await asyncio.sleep(0.01)
        started = now()
        peer.drop()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, PeerError) and "connection lost" in str(r) for r in results)
        assert now() - started < 0.01  # not at the timeout: when the connection went
        assert not client.connected and client.failed_recently()

    run(main())


def test_a_refused_peer_is_not_redialled_before_the_backoff() -> None:
    peer = FakePeer(SECRET, echo)
    peer.refuse = True

    async def main() -> None:
        client = client_of(peer)
        with pytest.raises(PeerError, match="cannot connect"):
            await client.call("ECHO", b"a")
        with pytest.raises(PeerError, match="down, retrying shortly"):
            await client.call("ECHO", b"a")
        client.send_nowait("GC.SWIM", b"x")  # no dial either
        await asyncio.sleep(0)
        assert peer.dials == 1
        peer.refuse = False
        await asyncio.sleep(RECONNECT_BACKOFF_MS / 1000)
        assert await client.call("ECHO", b"b") == b"b"
        assert peer.dials == 2

    run(main())


def test_a_connect_that_hangs_ends_at_the_callers_timeout() -> None:
    peer = FakePeer(SECRET, echo)
    peer.hang_dials = True

    async def main() -> None:
        client = client_of(peer)
        started = now()
        with pytest.raises(PeerError, match="not connected within 300 ms"):
            await client.call("ECHO", b"a", timeout_ms=300)
        assert now() - started == pytest.approx(0.3, abs=0.002)
        client.close()

    run(main())


def test_after_a_lost_connection_the_next_request_reconnects() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer)
        await client.call("ECHO", b"a")
        peer.drop()
        await asyncio.sleep(0.01)
        with pytest.raises(PeerError, match="down, retrying shortly"):
            await client.call("ECHO", b"b")
        await asyncio.sleep(RECONNECT_BACKOFF_MS / 1000)
        assert await client.call("ECHO", b"c") == b"c"
        assert peer.dials == 2

    run(main())
    # The second connection proved the secret again before its first request.
    assert peer.commands()[-3:] == [b"GC.HELLO", b"GC.AUTH", b"ECHO"]
    assert peer.received[-1].authed


def test_fire_and_forget_connects_first_then_sends_and_drops_the_reply() -> None:
    peer = FakePeer(SECRET, echo)

    async def main() -> None:
        client = client_of(peer)
        client.send_nowait("GC.SWIM", b"one")
        await asyncio.sleep(0.01)
        assert client.connected
        client.send_nowait("GC.SWIM", b"two")
        await asyncio.sleep(0.01)

    run(main())
    assert peer.commands() == [b"GC.HELLO", b"GC.AUTH", b"GC.SWIM", b"GC.SWIM"]
    assert [r.argv[-1] for r in peer.received[2:]] == [b"one", b"two"]


def test_fire_and_forget_goes_through_the_datagram_seam_once_connected() -> None:
    peer = FakePeer(SECRET, echo)
    datagrams: list[bytes] = []

    async def main() -> None:
        client = PeerClient(
            "peer:7379", "me", SECRET, dial=peer.dial, datagram=lambda t, d: datagrams.append(d)
        )
        client.send_nowait("GC.SWIM", b"one")  # connects, then the datagram
        await asyncio.sleep(0.01)
        client.send_nowait("GC.SWIM", b"two")
        # Nothing waits for a reply: a request after them gets its own answer.
        assert await client.call("ECHO", b"a") == b"a"

    run(main())
    assert datagrams == [
        b"*2\r\n$7\r\nGC.SWIM\r\n$3\r\none\r\n",
        b"*2\r\n$7\r\nGC.SWIM\r\n$3\r\ntwo\r\n",
    ]
    assert peer.commands() == [b"GC.HELLO", b"GC.AUTH", b"ECHO"]


def test_peers_keep_one_client_per_address_and_channel_and_dial_the_route() -> None:
    dialled: list[str] = []
    peer = FakePeer(SECRET, echo)

    def dial_to(addr: str) -> Any:
        dialled.append(addr)
        return peer.dial

    peers = Peers("me", SECRET, routes={"a:1": "relay:9"}, dial=dial_to)
    assert peers.get("a:1") is peers.get("a:1")
    assert peers.get("a:1", "forward") is not peers.get("a:1")
    peers.get("b:2")
    assert dialled == ["relay:9", "relay:9", "b:2"]

    async def main() -> None:
        assert await peers.get("a:1").call("ECHO", b"x") == b"x"
        peers.close()
        await asyncio.sleep(0.01)
        assert peer.open == []

    run(main())


def test_a_bad_address_fails_when_its_client_is_made() -> None:
    with pytest.raises(ValueError):
        Peers("me", SECRET).get("no-port")


def test_a_failed_handshake_backs_off_longer_each_time_and_is_counted() -> None:
    peer = FakePeer("another secret", echo)
    stats = HandshakeStats()

    async def main() -> None:
        client = PeerClient("peer:7379", "me", SECRET, dial=peer.dial, handshakes=stats)
        with pytest.raises(PeerError, match="failed to prove the cluster secret"):
            await client.call("ECHO", b"a")
        retries = []
        for _ in range(8):
            failed_at = now()
            while True:  # refused at once until the backoff has passed, then dialled
                with pytest.raises(PeerError) as caught:
                    await client.call("ECHO", b"a")
                if "retrying shortly" not in str(caught.value):
                    break
                await asyncio.sleep(0.01)
            assert "failed to prove the cluster secret" in str(caught.value)
            retries.append(round(now() - failed_at, 1))
            assert peer.dials == len(retries) + 1
        assert retries[:3] == [0.2, 0.4, 0.8]
        assert max(retries) <= AUTH_BACKOFF_MAX_MS / 1000 + 0.1

    run(main())
    # Every connection sent GC.HELLO only: the peer's proof never checked out.
    assert set(peer.commands()) == {b"GC.HELLO"}
    assert stats.failed >= 8 and stats.secret_failures == stats.failed and stats.proven == 0


@pytest.mark.parametrize(
    ("peer_id", "expected", "reason"),
    [
        ("me", None, "claims this node's own id"),  # the dialer's own handshake, reflected
        ("n2", "n3", "is n2, not n3"),  # a member's address answered by another node
    ],
)
def test_a_peer_that_is_not_who_membership_says_is_refused_before_any_proof(
    peer_id: str, expected: str | None, reason: str
) -> None:
    peer = FakePeer(SECRET, echo, node_id=peer_id)
    stats = HandshakeStats()

    async def main() -> None:
        client = PeerClient(
            "peer:7379", "me", SECRET, dial=peer.dial, expect=lambda: expected, handshakes=stats
        )
        with pytest.raises(PeerError, match=reason):
            await client.call("ECHO", b"a")

    run(main())
    assert peer.commands() == [b"GC.HELLO"]  # no proof of this node's went out
    assert stats.failed == 1 and stats.secret_failures == 0
