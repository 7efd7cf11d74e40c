"""Cutting and healing links between nodes with iptables, inside their namespaces.

A cut `src -> dst` drops, in dst's namespace, every packet from src (`INPUT -s src -j
DROP`): src's packets vanish silently, as on a real partition. A DROP in src's own
OUTPUT chain would not do: the kernel fails a locally dropped send at once (EPERM), so
the sender would see a fast error instead of a silent loss.

Over TCP a one-way cut breaks both directions of new connections (the handshake needs
both ways) but still lets the other direction's packets arrive, which is what makes it
a different fault from a two-way cut for established connections and for SWIM's
indirect probes.

The rules live in namespaces this harness made, so removing a namespace removes its
rules; `heal_all()` still deletes each rule it added, so a healed network is checked to
be clean (`rules()`).
"""

from __future__ import annotations

from .netns import Host, run

# iptables in a namespace: the nft backend (Debian's default) and legacy both work;
# `-w` waits for the xtables lock the legacy backend may hold.
IPTABLES = ["iptables", "-w"]


def rule(src: Host) -> list[str]:
    return ["INPUT", "-s", src.addr, "-j", "DROP"]


class Links:
    """The directed cuts in force between hosts of one network."""

    def __init__(self) -> None:
        self._cuts: dict[tuple[str, str], tuple[Host, Host]] = {}

    @property
    def cuts(self) -> set[tuple[str, str]]:
        """(src, dst) names of the links cut one way."""
        return set(self._cuts)

    def cut(self, src: Host, dst: Host) -> None:
        """Drop everything src sends to dst (idempotent)."""
        if (src.name, dst.name) in self._cuts:
            return
        run(dst.exec_argv([*IPTABLES, "-A", *rule(src)]))
        self._cuts[src.name, dst.name] = (src, dst)

    def cut_both(self, a: Host, b: Host) -> None:
        self.cut(a, b)
        self.cut(b, a)

    def heal(self, src: Host, dst: Host) -> None:
        if self._cuts.pop((src.name, dst.name), None) is not None:
            run(dst.exec_argv([*IPTABLES, "-D", *rule(src)]))

    def heal_all(self) -> None:
        for src, dst in list(self._cuts.values()):
            self.heal(src, dst)


def rules(host: Host) -> list[str]:
    """The INPUT rules in force in a host's namespace (iptables -S lines)."""
    out = run(host.exec_argv([*IPTABLES, "-S", "INPUT"])).stdout
    return [line for line in out.splitlines() if line.startswith("-A ")]


def iptables_works(host: Host) -> str:
    """'' if iptables can add and delete a rule in the host's namespace, else why not."""
    probe = ["INPUT", "-s", "192.0.2.1", "-j", "DROP"]  # TEST-NET-1: never a real peer
    for action in ("-A", "-D"):
        done = run(host.exec_argv([*IPTABLES, action, *probe]), check=False)
        if done.returncode != 0:
            return done.stderr.strip() or f"iptables {action} exited {done.returncode}"
    return ""
