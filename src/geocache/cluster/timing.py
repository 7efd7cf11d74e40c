"""SWIM's timing for the network a cluster runs on: the `lan` and `wan` profiles, the
`--swim-*` flags over them, and the probe timeout toward a far region.

`lan` is SwimConfig's defaults (probe every 1 s, 400 ms for a direct answer, suspicion
4 x max(1, log10 n) intervals): one data centre, or regions a few ms apart. `wan` is for
regions on other continents, or links that lose packets in bursts: probes every 2 s, 800
ms for a direct answer, suspicion 6 x max(1, log10 n) intervals. Detection is slower
(the bound doubles and more) and false suspicions rarer. `detection_bounds()` gives the
numbers the README prints.

Probes to members of another region wait for a timeout made from the round trip
measured to that region (streams.py PINGs a gateway every second): RTT_TIMEOUT_MULT
round trips, never less than the profile's own timeout, never more than
MAX_TIMEOUT_SHARE of the interval (the rest is the indirect probes' time).
"""

from __future__ import annotations

from dataclasses import replace

from geocache.cluster.swim_messages import SwimConfig
from geocache.config import NodeConfig

PROFILES: dict[str, SwimConfig] = {
    "lan": SwimConfig(),
    # 2 s and 800 ms: twice the LAN's, so a 300 ms round trip (Europe to Australia) with
    # its jitter answers a direct probe, and the indirect path (two far round trips) fits
    # the interval's remaining 1.2 s. 6 (memberlist's WAN multiplier): a suspect on a
    # lossy long link gets 12 s or more to refute.
    "wan": SwimConfig(probe_interval_ms=2_000, probe_timeout_ms=800, suspicion_mult=6),
}
# 3 round trips: one for the answer, two of margin for queueing and jitter on a far link.
RTT_TIMEOUT_MULT = 3.0
# At most 60% of the interval waits for the direct answer; indirect probes need the rest.
MAX_TIMEOUT_SHARE = 0.6


def swim_config(config: NodeConfig) -> SwimConfig:
    """The profile `config.network` names, with the `--swim-*` settings that are set."""
    base = PROFILES[config.network]
    changes = {
        "probe_interval_ms": config.swim_probe_interval_ms,
        "probe_timeout_ms": config.swim_probe_timeout_ms,
        "suspicion_mult": config.swim_suspicion_mult,
    }
    return replace(base, **{name: value for name, value in changes.items() if value})


def probe_timeout_ms(config: SwimConfig, rtt_ms: float | None) -> int:
    """How long a direct probe of a member RTT ms away waits (None: not measured yet, or
    this node's own region)."""
    if rtt_ms is None:
        return config.probe_timeout_ms
    ceiling = int(config.probe_interval_ms * MAX_TIMEOUT_SHARE)
    wanted = int(RTT_TIMEOUT_MULT * rtt_ms)
    return max(config.probe_timeout_ms, min(wanted, ceiling))


def detection_bounds(network: str, sizes: tuple[int, ...] = (3, 6, 20)) -> dict[int, float]:
    """Seconds from a crash to DEAD at every member, for clusters of `sizes` members."""
    config = PROFILES[network]
    return {n: round(config.detection_bound_ms(n) / 1000, 1) for n in sizes}
