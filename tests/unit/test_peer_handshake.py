"""The peer handshake, from the answering node's side, against everything a stranger can send.

A node in cluster mode (never started: no sockets) is fed sequences of peer frames on
several connections at once. The attacker does not know the secret, but it sees every
reply and may resend any of it anywhere: a server proof reflected back as a client
proof, a proof made for another connection (a relay), a proof made with another secret,
a handshake claiming the node's own id, malformed ids and nonces, peer commands at any
moment. Whatever the sequence, a connection runs a peer command only after a proof
made with the secret for its very own handshake.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from geocache import auth
from geocache.clock import ManualClock
from geocache.commands.context import Session
from geocache.commands.table import NOT_A_PEER, dispatch
from geocache.config import NodeConfig
from geocache.protocol.types import OK, Error
from geocache.server.node import Node

SECRET = "s3cret"
NODE_ID = "victim"
SESSIONS = 3


def make_node() -> Node:
    return Node(NodeConfig(cluster_secret=SECRET, port=7000, node_id=NODE_ID), clock=ManualClock())


@dataclass
class Conn:
    """One connection as the attacker (and the model) see it."""

    session: Session
    # The handshake the node answered and the attacker could finish: what both sides hold.
    transcript: auth.Transcript | None = None
    proven: bool = False
    server_proofs: list[bytes] = field(default_factory=list)


HELLO_IDS = [b"peer-2", NODE_ID.encode(), b"", b"has space", b"x" * 200]
NONCES = ["fresh", "fixed", "short", "empty", "upper"]
PROOFS = [
    "random",  # guessed
    "empty",
    "reflected",  # a server proof this node made, on any connection
    "other-secret",  # the right transcript, the wrong secret
    "relayed",  # made with the secret, for another connection's handshake
    "wrong-label",  # made with the secret for this handshake, as the server's proof
    "legit",  # made with the secret for this handshake: only a real peer can
]
PEER_COMMANDS = [
    [b"GC.DIGEST"],
    [b"GC.APPLY", b"k", b"v", b"0", b"1", b"peer-2"],
    [b"GC.SWIM", b"a:1", b"x", b"1"],
    [b"gc.fwd", b"2", b"0", b"SET", b"k", b"v"],
]

actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("hello"),
            st.integers(0, SESSIONS - 1),
            st.sampled_from(HELLO_IDS),
            st.sampled_from(NONCES),
        ),
        st.tuples(st.just("auth"), st.integers(0, SESSIONS - 1), st.sampled_from(PROOFS)),
        st.tuples(st.just("peer"), st.integers(0, SESSIONS - 1), st.sampled_from(PEER_COMMANDS)),
        st.tuples(st.just("raw"), st.integers(0, SESSIONS - 1), st.binary(max_size=80)),
    ),
    max_size=40,
)


def _nonce(kind: str) -> bytes:
    return {
        "fresh": auth.new_nonce(),
        "fixed": b"0" * auth.NONCE_HEX_CHARS,
        "short": b"abcd",
        "empty": b"",
        "upper": auth.new_nonce().upper(),
    }[kind]


def _proof(kind: str, conns: list[Conn], me: Conn) -> bytes:
    t = me.transcript or auth.Transcript("peer-2", NODE_ID, b"a" * 32, b"b" * 32)
    others = [c.transcript for c in conns if c is not me and c.transcript is not None]
    seen = [p for c in conns for p in c.server_proofs]
    if kind == "random":
        return auth.new_nonce() * 2
    if kind == "empty":
        return b""
    if kind == "reflected":
        return seen[-1] if seen else b""
    if kind == "other-secret":
        return auth.proof("guess", auth.CLIENT_TO_SERVER, t)
    if kind == "relayed":
        return auth.proof(SECRET, auth.CLIENT_TO_SERVER, others[-1]) if others else b""
    if kind == "wrong-label":
        return auth.proof(SECRET, auth.SERVER_TO_CLIENT, t)
    return auth.proof(SECRET, auth.CLIENT_TO_SERVER, t)


def _step(node: Node, conns: list[Conn], action: tuple[object, ...]) -> None:
    kind, index = action[0], action[1]
    assert isinstance(index, int)
    conn = conns[index]
    session = conn.session
    if kind == "hello":
        raw_id, nonce_kind = action[2], action[3]
        assert isinstance(raw_id, bytes) and isinstance(nonce_kind, str)
        nonce = _nonce(nonce_kind)
        reply = dispatch(node.table, session, [b"GC.HELLO", raw_id, nonce])
        conn.transcript = None
        if isinstance(reply, list):
            server_id, server_nonce, server_proof = reply
            conn.server_proofs.append(server_proof)
            t = auth.Transcript(raw_id.decode(), server_id.decode(), nonce, server_nonce)
            # The node proved the secret first, over this very handshake.
            assert auth.verify(SECRET, auth.SERVER_TO_CLIENT, t, server_proof)
            conn.transcript = t
        else:
            refused_for = (
                conn.proven,
                raw_id == NODE_ID.encode(),
                not auth.valid_nonce(nonce),
                not auth.valid_node_id(raw_id),
            )
            assert any(refused_for), reply
    elif kind == "auth":
        proof_kind = action[2]
        assert isinstance(proof_kind, str)
        proof = _proof(proof_kind, conns, conn)
        had = conn.transcript
        reply = dispatch(node.table, session, [b"GC.AUTH", proof])
        conn.transcript = None  # one try per handshake
        legit = proof == auth.proof(SECRET, auth.CLIENT_TO_SERVER, had) if had else False
        if legit and not conn.proven:
            assert reply == OK
            conn.proven = True
        else:
            assert isinstance(reply, Error), reply
    elif kind == "peer":
        argv = action[2]
        assert isinstance(argv, list)
        reply = dispatch(node.table, session, list(argv))
        if not conn.proven:
            assert reply == NOT_A_PEER, reply
    else:
        raw = action[2]
        assert isinstance(raw, bytes)
        argv = [b"GC." + raw[:8], *raw[8:].split(b" ")]
        dispatch(node.table, session, argv)
        conn.transcript = None  # a stray GC.HELLO or GC.AUTH ends the handshake too
    if session.closing:  # a refused handshake closes the connection: the attacker redials
        conns[index] = Conn(Session(node, 100 + len(conns) + index))


@settings(max_examples=300, deadline=None)
@given(actions)
def test_no_sequence_of_frames_makes_an_unproven_connection_a_peer(
    steps: list[tuple[object, ...]],
) -> None:
    node = make_node()
    conns = [Conn(Session(node, i)) for i in range(SESSIONS)]
    for action in steps:
        _step(node, conns, action)
        for conn in conns:
            assert bool(conn.session.peer_id) == conn.proven
            if not conn.proven:
                assert dispatch(node.table, conn.session, [b"GC.DIGEST"]) == NOT_A_PEER
    # Nothing an unproven connection sent reached the store.
    if not any(c.proven for c in conns):
        assert node.store.peek(b"k") is None


def test_the_model_reaches_a_proven_peer_only_the_legit_way() -> None:
    """The property above is not vacuous: a legit proof does make a peer."""
    node = make_node()
    conns = [Conn(Session(node, i)) for i in range(SESSIONS)]
    for action in [
        ("hello", 0, b"peer-2", "fresh"),
        ("hello", 1, b"peer-2", "fresh"),
        ("auth", 1, "relayed"),  # connection 0's handshake, on connection 1: refused
        ("auth", 0, "legit"),
        ("peer", 0, [b"GC.APPLY", b"k", b"v", b"0", b"1", b"peer-2"]),
    ]:
        _step(node, conns, action)
    assert conns[0].proven and conns[0].session.peer_id == "peer-2"
    assert not conns[1].proven and node.store.peek(b"k") is not None


def test_a_proven_connection_cannot_start_over() -> None:
    node = make_node()
    session = Session(node, 1)
    nonce = auth.new_nonce()
    hello = dispatch(node.table, session, [b"GC.HELLO", b"peer-2", nonce])
    assert isinstance(hello, list)
    t = auth.Transcript("peer-2", hello[0].decode(), nonce, hello[1])
    proof = auth.proof(SECRET, auth.CLIENT_TO_SERVER, t)
    assert dispatch(node.table, session, [b"GC.AUTH", proof]) == OK
    assert str(dispatch(node.table, session, [b"GC.HELLO", b"other", nonce])).startswith("ERR")
    assert session.peer_id == "peer-2"


def test_refusals_are_counted() -> None:
    node = make_node()
    assert node.cluster is not None
    session = Session(node, 1)
    dispatch(node.table, session, [b"GC.AUTH", b"00"])
    session = Session(node, 2)
    dispatch(node.table, session, [b"GC.HELLO", NODE_ID.encode(), auth.new_nonce()])
    assert node.cluster.trust.status()["peer_handshakes_refused"] == 2


def test_transcripts_encode_unambiguously() -> None:
    a = auth.Transcript("ab", "c", b"1" * 32, b"2" * 32)
    b = auth.Transcript("a", "bc", b"1" * 32, b"2" * 32)
    assert a.encode(auth.CLIENT_TO_SERVER) != b.encode(auth.CLIENT_TO_SERVER)
    assert a.encode(auth.CLIENT_TO_SERVER) != a.encode(auth.SERVER_TO_CLIENT)
    with_binding = auth.Transcript("ab", "c", b"1" * 32, b"2" * 32, binding=b"tls")
    assert auth.proof(SECRET, auth.CLIENT_TO_SERVER, a) != auth.proof(
        SECRET, auth.CLIENT_TO_SERVER, with_binding
    )
