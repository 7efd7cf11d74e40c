"""Zero-config discovery on the local network: announce this node over mDNS and find the
nodes of the same cluster (`--discover mdns`).

Each node registers one service instance of `--mdns-service-type` (default
`_geocache._tcp.local.`) at its advertised address and port, with TXT properties
`cluster` (`--cluster-name`), `node` and `region`, and browses the same type. An instance
whose `cluster` is this node's is handed to `on_addr` as a seed; membership then joins
it as any seed. mDNS only says where nodes are: joining still needs the cluster secret
(every peer connection proves it first), so a node of another cluster, or a stranger
announcing the name, learns nothing and is never let in.

Announcements go out on the interface of the advertised address (an IP address: a
wildcard bind advertises the address toward the first seed, advertise.py), since a node
bound to one network should not announce itself on another. Removals are ignored:
membership notices departures itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from geocache.cluster.discovery import join_host_port

if TYPE_CHECKING:
    from zeroconf import ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

log = logging.getLogger("geocache.mdns")

# 3 s for an instance's address and TXT records after it is seen: a few mDNS retries.
RESOLVE_TIMEOUT_MS = 3000
# DNS labels are at most 63 bytes; an instance name is "<cluster>-<node id>".
MAX_INSTANCE_CHARS = 63


def instance_name(cluster_name: str, node_id: str) -> str:
    """This node's instance label: unique in the cluster, at most 63 characters."""
    return f"{cluster_name}-{node_id}".replace(".", "-")[:MAX_INSTANCE_CHARS]


class MdnsDiscovery:
    """Announces one node and reports the cluster's other nodes as they appear."""

    def __init__(
        self,
        node_id: str,
        addr: str,
        region: str,
        cluster_name: str,
        service_type: str,
        on_addr: Callable[[str], None],
    ) -> None:
        self.node_id = node_id
        self.addr = addr
        self.region = region
        self.cluster_name = cluster_name
        self.service_type = service_type
        self._on_addr = on_addr
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.found: set[str] = set()

    def _host_ip(self) -> str | None:
        host = self.addr.rpartition(":")[0].strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
        return None if ip.is_unspecified else str(ip)

    async def start(self) -> None:
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        ip = self._host_ip()
        if ip is None:
            raise ValueError("mDNS discovery needs an IP address to announce: --advertise-addr")
        port = int(self.addr.rpartition(":")[2])
        self._zc = AsyncZeroconf(interfaces=[ip])
        name = instance_name(self.cluster_name, self.node_id)
        info = AsyncServiceInfo(
            self.service_type,
            f"{name}.{self.service_type}",
            parsed_addresses=[ip],
            port=port,
            properties={"cluster": self.cluster_name, "node": self.node_id, "region": self.region},
            server=f"{name}.local.",
        )
        await self._zc.async_register_service(info)
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, self.service_type, handlers=[self._on_change]
        )
        log.info("announced over mDNS", extra={"service": info.name, "addr": self.addr})

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            return
        task = asyncio.ensure_future(self._resolve(service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        if self._zc is None:
            return
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zc.zeroconf, RESOLVE_TIMEOUT_MS):
            return
        props = {k: v for k, v in info.properties.items() if v is not None}
        if props.get(b"cluster") != self.cluster_name.encode():
            return  # another cluster's node on the same network
        addresses = info.parsed_addresses()
        if not addresses or info.port is None:
            return
        addr = join_host_port(addresses[0], info.port)
        if addr != self.addr and addr not in self.found:
            self.found.add(addr)
            log.info(
                "found over mDNS", extra={"node": props.get(b"node", b"").decode(), "addr": addr}
            )
            self._on_addr(addr)

    async def stop(self) -> None:
        """Say goodbye (the instance is unregistered) and stop browsing."""
        for task in list(self._tasks):
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            await self._zc.async_unregister_all_services()
            await self._zc.async_close()
        self._zc = self._browser = None
