"""A private network of namespaces: one per node, joined by veth pairs on one bridge.

Layout, all created here and removed by `close()`:

    host namespace              hub namespace                node namespaces
    <tag>h 10.77.S.1/24  ---  <tag>hp -+- bridge <tag>br -+- <tag>bN --- <tag>aN 10.77.S.(10+N)

The bridge lives in a namespace of its own, not the host's: the host may load
br_netfilter, and then its firewall (a Docker host's FORWARD DROP) would see bridged
traffic. Only the host end of one veth (the test process's way in: workload and
checker) is in the host namespace, with the subnet's .1 address.

Names carry a tag made of the process id and a per-process counter, so two networks of
one run, or a run beside a crashed earlier one's leftovers, never share a name. The
subnet's third octet is the first one, from a pid-derived start, that no route of the
host uses yet (a leftover of a crashed run keeps its subnet and is skipped).

Every command is `ip`, run with a deadline; a failing one raises with its stderr.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from dataclasses import dataclass, field

# 10.77.0.0/16: a private range no CI host or developer network is known to use; the
# harness takes one /24 of it per network.
PREFIX = "10.77"
# Third octets 64..253: 190 subnets, so concurrent runs rarely probe the same one twice.
FIRST_OCTET, OCTETS = 64, 190
# Node N (1-based) gets .(10 + N): .1 is the host, the gap keeps room for future helpers.
NODE_OFFSET = 10
MAX_NODES = 200
# An `ip` or `iptables` command on a quiet machine takes milliseconds; 10 s means stuck.
COMMAND_TIMEOUT_S = 10.0

_counter = itertools.count(1)


class NetworkError(RuntimeError):
    """A namespace, link or address could not be made."""


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command with a deadline; raise NetworkError with its stderr if it fails."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def _subnet_in_use(octet: int) -> bool:
    routes = run(["ip", "-4", "route", "show", "to", "match", f"{PREFIX}.{octet}.0/24"])
    # `to match` also lists the default route; only a route inside our /24 counts.
    return any(line.startswith(f"{PREFIX}.{octet}.") for line in routes.stdout.splitlines())


def pick_octet() -> int:
    start = os.getpid() % OCTETS
    for i in range(OCTETS):
        octet = FIRST_OCTET + (start + i) % OCTETS
        if not _subnet_in_use(octet):
            return octet
    raise NetworkError(f"every {PREFIX}.x.0/24 with x in {FIRST_OCTET}.. is in use")


@dataclass(frozen=True, slots=True)
class Host:
    """A node's place in the network: its namespace and address."""

    name: str
    netns: str
    addr: str

    def exec_argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside this namespace (ip netns exec execs in place: same PID)."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class Network:
    """One bridge, a host veth and a namespace per node; `close()` removes them all."""

    tag: str = field(default_factory=lambda: f"gc{os.getpid():x}x{next(_counter):x}")
    octet: int = 0
    hosts: dict[str, Host] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _host_links: list[str] = field(default_factory=list)

    @property
    def hub(self) -> str:
        return f"{self.tag}-hub"

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    @property
    def gateway(self) -> str:
        """The host's address in the network (where the workload connects from)."""
        return f"{PREFIX}.{self.octet}.1"

    def create(self) -> None:
        """The hub namespace with its bridge, and the host's veth into it."""
        self.octet = pick_octet()
        self._add_namespace(self.hub)
        run(["ip", "-n", self.hub, "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "-n", self.hub, "link", "set", self.bridge, "up"])
        host_end, hub_end = f"{self.tag}h", f"{self.tag}hp"
        run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", hub_end])
        self._host_links.append(host_end)
        run(["ip", "link", "set", hub_end, "netns", self.hub])
        run(["ip", "-n", self.hub, "link", "set", hub_end, "master", self.bridge, "up"])
        run(["ip", "addr", "add", f"{self.gateway}/24", "dev", host_end])
        run(["ip", "link", "set", host_end, "up"])

    def add_host(self, name: str) -> Host:
        """A namespace for node `name` on the bridge, with the next free address."""
        index = len(self.hosts) + 1
        if index > MAX_NODES:
            raise NetworkError(f"at most {MAX_NODES} nodes per network")
        netns, inner, outer = f"{self.tag}-n{index}", f"{self.tag}a{index}", f"{self.tag}b{index}"
        addr = f"{PREFIX}.{self.octet}.{NODE_OFFSET + index}"
        self._add_namespace(netns)
        veth = ["type", "veth", "peer", "name", outer, "netns", self.hub]
        run(["ip", "link", "add", inner, "netns", netns, *veth])
        run(["ip", "-n", self.hub, "link", "set", outer, "master", self.bridge, "up"])
        run(["ip", "-n", netns, "addr", "add", f"{addr}/24", "dev", inner])
        run(["ip", "-n", netns, "link", "set", inner, "up"])
        host = Host(name, netns, addr)
        self.hosts[name] = host
        return host

    def close(self) -> list[str]:
        """Remove everything made here; returns what could not be removed (best effort)."""
        left = []
        for netns in reversed(self._namespaces):
            if run(["ip", "netns", "del", netns], check=False).returncode != 0:
                left.append(netns)
        for link in self._host_links:
            # Gone with its peer in the hub namespace, normally; make sure.
            if run(["ip", "link", "show", link], check=False).returncode == 0:
                run(["ip", "link", "del", link], check=False)
        self._namespaces.clear()
        self._host_links.clear()
        self.hosts.clear()
        return left

    def leftovers(self) -> list[str]:
        """Namespaces and host links of this network that still exist (for tests)."""
        names = run(["ip", "netns", "list"]).stdout.split()
        links = run(["ip", "-o", "link", "show"]).stdout
        host_links = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
        mine = [n for n in names if n.startswith(f"{self.tag}-")]
        return mine + sorted(host_links & {f"{self.tag}h"})

    def _add_namespace(self, netns: str) -> None:
        run(["ip", "netns", "add", netns])
        self._namespaces.append(netns)
        run(["ip", "-n", netns, "link", "set", "lo", "up"])
