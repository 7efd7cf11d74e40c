"""A node's peer connections over the simulated network: the real `Peers`, dialled here.

The cluster's own `PeerClient` runs unchanged: it reads the event loop's clock, which
is virtual time here (loop.py), and opens its connections through the dial function
this module gives it, which connects over `SimNetwork` (wire.py) instead of TCP.

Fire-and-forget messages (membership, `PeerClient.send_nowait`) leave through the
client's `datagram` seam: each is a datagram beside the connection (wire.py), which the
simulated network loses one by one on a lossy link, reorders and delays, and which the
receiving node runs on the session that connection authenticated, with no reply. That is
how SWIM sees loss here. The alternative, a simulated transport that loses whole writes
on a lossy link, cannot work: membership shares its connection with replication and
repair, and a write lost from the byte stream would leave a request without a reply and
every later reply out of step.
"""

from __future__ import annotations

import asyncio

from geocache.cluster.peers import Dial, Peers, ProtocolFactory
from sim.wire import Endpoint, SimNetwork, SimTransport


def sim_peers(net: SimNetwork, host: Endpoint, node_id: str, secret: str) -> Peers:
    """The peer connections of the node at `host`, over `net`."""

    def dial_to(addr: str) -> Dial:
        async def dial(factory: ProtocolFactory) -> tuple[asyncio.Transport, asyncio.Protocol]:
            protocol = factory()
            return await net.open(host, addr, protocol), protocol

        return dial

    return Peers(node_id, secret, dial=dial_to, datagram=send_datagram)


def send_datagram(transport: asyncio.Transport, data: bytes) -> None:
    """One membership message as a datagram beside `transport`'s connection (lossy)."""
    if not isinstance(transport, SimTransport):
        raise TypeError(f"a simulated peer has a SimTransport, not {type(transport).__name__}")
    transport.send_datagram(data)
