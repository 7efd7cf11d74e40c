"""The cluster map for clients: GC.TOPOLOGY and GC.OWNERS.

Both are read-only and open to every client, since smart clients route with them; a
standalone node answers as a cluster of one. They read the node's `Topology`
(context.py), never the cluster itself.
"""

from __future__ import annotations

from geocache.commands.context import Session
from geocache.commands.table import command

_NO_KEYS = (0, 0, 0)


@command("gc.topology", 1, "readonly", keys=_NO_KEYS, group="cluster", summary="The cluster map")
def cmd_gc_topology(session: Session, argv: list[bytes]) -> object:
    config = session.node.config
    topology = session.node.topology
    if topology is not None:
        return [
            {
                b"id": m.node_id.encode(),
                b"region": m.region.encode(),
                b"addr": m.addr.encode(),
                b"state": m.state.name.lower().encode(),
                b"incarnation": m.incarnation,
                b"replicas": topology.replicas,
                b"self": int(m.node_id == topology.node_id),
            }
            for m in topology.members()
        ]
    # The port this client came in on: a TLS client must be sent back to the TLS port.
    port = session.laddr.rpartition(":")[2] or session.node.resp_port
    addr = config.advertise_addr or f"{config.bind}:{port}"
    return [
        {
            b"id": config.effective_node_id.encode(),
            b"region": config.region.encode(),
            b"addr": addr.encode(),
            b"state": b"alive",
            b"incarnation": 0,
            b"replicas": 1,
            b"self": 1,
        }
    ]


@command("gc.owners", 2, "readonly", group="cluster", summary="The nodes owning a key")
def cmd_gc_owners(session: Session, argv: list[bytes]) -> object:
    topology = session.node.topology
    if topology is not None:
        return [owner.encode() for owner in topology.owners(argv[1])]
    return [session.node.config.effective_node_id.encode()]
