"""`geocache demo`: regions of nodes joined over slow links, a workload, a crash, live.

The nodes are real `geocache serve` subprocesses on free ports of 127.0.0.1, in up to
three regions (us-east, eu-west, ap-south). Regions are far apart because every node
reaches every node of another region through a delay relay (relay.py) with that pair's
one-way delay: one relay per (remote node, source region), handed to the node as its
`--peer-map`. Seeds are canonical addresses (its region's first node and the first node
of each other region); the peer map routes the remote ones through their relays.

Once every node is ready (INFO `cluster_ready:1`, every member alive), one workload
thread per region (90% GET, 10% SET, skewed keys, pipelined, paced to `rate` commands
a second, bounded by time and count) sends to that region's nodes in turn, as clients
in that region would: every node takes writes, and the cross-region streams carry them
to the other regions, whose reads then hit. A third of the way in, the last node of the
first region is killed with SIGKILL: its region's workload moves on to the other nodes
and reads go on. Two thirds in, it is restarted on its port and rejoins.

Every link is TLS, as a deployment should be: at start the demo makes a CA, a node
certificate for 127.0.0.1 and a client certificate in the log directory (certs.py); the
nodes listen only on their TLS port (`--port 0`), dial each other over mutual TLS
(`--tls-cluster yes`, through the relays, which forward bytes), and the workload and the
table's INFO calls present the client certificate.

A live table shows each region's nodes up, keys, hit ratio, commands a second and
replication lag to each other region (the worst `lag_p99_ms` of its nodes in INFO's
`# Regions` section, "-" where a node does not report it). At the end, or on Ctrl-C,
every node gets SIGTERM and must exit 0, the relays stop, and a summary is printed:
commands, errors, and lag p99 per region pair. Nothing is left running.

The first node serves HTTP, and with it the live dashboard, whose URL is printed once
the nodes are ready: plain HTTP on 127.0.0.1 (`--tls-http no`), since a browser has no
client certificate to show the demo's nodes. With `keep`, the nodes (and relays) keep
running after the workload until Ctrl-C or SIGTERM, so a person can look at the
dashboard at leisure.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from geocache.cli.certs import CertFiles, make_certs
from geocache.cli.status import parse_info
from geocache.client.connection import Connection, ReplyError
from geocache.ports import free_port
from geocache.protocol.types import Error
from geocache.relay import RelaySet
from geocache.tls import client_context

REGIONS = ("us-east", "eu-west", "ap-south")
# One-way delays between regions (ms), about what the internet gives between them; the
# relays add +-JITTER_MS around each.
ONE_WAY_MS = {
    frozenset({"us-east", "eu-west"}): 40.0,
    frozenset({"us-east", "ap-south"}): 90.0,
    frozenset({"eu-west", "ap-south"}): 70.0,
}
JITTER_MS = 3.0
REPLICAS = 2  # copies of each key in a region (the node default, passed explicitly)
PIPELINE = 50
# A bound on each region's workload whatever the duration: 20 million commands.
MAX_COMMANDS = 20_000_000
# Nine Python nodes starting at once on a small machine, then warming up: 60 s at most.
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
REFRESH_S = 0.5
INFO_TIMEOUT_S = 1.0
# Errors that mean "not here, not now" (a node still joining, or owners in flux right
# after the kill): the workload moves on, as a client's failover would.
_RETRIABLE = ("LOADING", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS")


@dataclass
class DemoNode:
    node_id: str
    region: str
    port: int
    argv: list[str]
    log_path: str
    proc: subprocess.Popen[bytes] | None = None
    http_port: int = 0  # 0: HTTP off

    def start(self) -> int:
        with open(self.log_path, "ab") as log:
            # A session of its own: Ctrl-C reaches the demo, which stops nodes in order.
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, deadline: float) -> int:
        """Its exit code, once it exits; SIGKILL (and -9) if it has not by `deadline`."""
        if self.proc is None:
            return 0
        try:
            return self.proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def stop_all(nodes: list[DemoNode]) -> list[int]:
    """SIGTERM to every node at once, then their exit codes (all within STOP_TIMEOUT_S)."""
    for node in nodes:
        node.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    return [node.wait(deadline) for node in nodes]


def one_way_ms(a: str, b: str) -> float:
    return ONE_WAY_MS[frozenset({a, b})]


def tls_flags(certs: CertFiles) -> list[str]:
    """TLS only (no plaintext port), mutual TLS between nodes, client certificates."""
    return [
        "--port",
        "0",
        "--tls-cluster",
        "yes",
        "--tls-cert-file",
        str(certs.node_cert),
        "--tls-key-file",
        str(certs.node_key),
        "--tls-ca-cert-file",
        str(certs.ca_cert),
    ]


def demo_client_tls(certs: CertFiles) -> ssl.SSLContext:
    return client_context(
        ca_file=str(certs.ca_cert), cert_file=str(certs.client_cert), key_file=str(certs.client_key)
    )


def make_nodes(
    regions: list[str], per_region: int, logdir: str, relays: RelaySet, certs: CertFiles
) -> list[DemoNode]:
    """Every node's command line; relays for every (remote node, source region)."""
    secret = secrets.token_hex(16)
    ports = {r: [free_port() for _ in range(per_region)] for r in regions}
    for source in regions:
        for target in (r for r in regions if r != source):
            for port in ports[target]:
                delay_ms, seed = one_way_ms(source, target), len(relays.relays())
                relays.add(f"127.0.0.1:{port}", delay_ms, JITTER_MS, source, seed)
    nodes: list[DemoNode] = []
    dashboard_port = free_port()  # the first node serves HTTP: the dashboard
    for region in regions:
        routes = relays.routes(region)
        peer_map = ",".join(f"{addr}={via}" for addr, via in sorted(routes.items()))
        seeds = ",".join(f"127.0.0.1:{ports[r][0]}" for r in regions)
        for i, port in enumerate(ports[region], 1):
            node_id = f"{region}-{i}"
            http_port = dashboard_port if not nodes else 0
            argv = [sys.executable, "-m", "geocache", "serve", "--tls-port", str(port)]
            argv += [*tls_flags(certs), "--http-port", str(http_port), "--tls-http", "no"]
            argv += ["--max-bytes", "64mb", "--node-id", node_id]
            argv += ["--region", region, "--cluster-secret", secret, "--seeds", seeds]
            argv += ["--replicas", str(REPLICAS), "--log-level", "warning"]
            argv += ["--peer-map", peer_map] if peer_map else []
            log_path = os.path.join(logdir, f"{node_id}.log")
            nodes.append(DemoNode(node_id, region, port, argv, log_path, http_port=http_port))
    return nodes


# -- the workload -------------------------------------------------------------------------


@dataclass
class Workload:
    """One region's clients: paced pipelines to its running nodes in turn."""

    region: str
    nodes: list[DemoNode]
    keys: int
    rate: float  # commands a second
    seed: int
    tls: ssl.SSLContext | None = None
    sent: int = 0  # commands answered
    issued: int = 0  # commands sent or attempted: what the pace counts
    errors: int = 0
    failovers: int = 0
    last_error: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    _conns: dict[str, Connection] = field(default_factory=dict)

    def run(self, deadline: float) -> None:
        rng = random.Random(self.seed)
        weights = [1.0 / (i + 1) ** 1.1 for i in range(self.keys)]  # Zipf-like skew
        started, turn = time.monotonic(), 0
        while time.monotonic() < deadline and self.issued < MAX_COMMANDS:
            # Paced: the machine runs every node, the relays and this; flat out, lag
            # would measure CPU contention rather than distance.
            if self.stop.wait(max(0.0, started + self.issued / self.rate - time.monotonic())):
                break
            node = self.nodes[turn % len(self.nodes)]
            turn += 1
            if node.running():
                self.issued += PIPELINE
                self._send(node, _batch(rng, weights, self.keys, self.region))
            elif turn % len(self.nodes) == 0:
                self.stop.wait(0.01)  # every node down: do not spin
        for conn in self._conns.values():
            conn.close()

    def _send(self, node: DemoNode, batch: list[tuple[str | int, ...]]) -> None:
        try:
            conn = self._conns.get(node.node_id)
            if conn is None:
                conn = Connection("127.0.0.1", node.port, 2.0, self.tls)
                self._conns[node.node_id] = conn
            replies = conn.pipeline(batch)
        except OSError:
            self._conns.pop(node.node_id, None)
            self.failovers += 1
            return
        self.sent += len(replies)
        for reply in replies:
            if isinstance(reply, Error):
                if reply.startswith(_RETRIABLE):
                    self.failovers += 1
                else:
                    self.errors += 1
                    self.last_error = str(reply)


def _batch(
    rng: random.Random, weights: list[float], keys: int, region: str
) -> list[tuple[str | int, ...]]:
    batch: list[tuple[str | int, ...]] = []
    for i in rng.choices(range(keys), weights, k=PIPELINE):
        if rng.random() < 0.1:
            batch.append(("SET", f"user:{i}", f"profile-{i}-{region}-" + "x" * 48, "EX", 300))
        else:
            batch.append(("GET", f"user:{i}"))
    return batch


# -- what the nodes say ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One node's INFO, the fields the table shows."""

    keys: int
    hits: int
    misses: int
    ready: bool
    alive: int
    regions: dict[str, dict[str, float]]  # remote region -> its `# Regions` fields


def parse_regions(text: str) -> dict[str, dict[str, float]]:
    """INFO's `# Regions` section: remote region -> {field: value}; {} without one.

    A line is `region:<name>=rtt_ms=41.2,lag_ms=45,...`; `region_<name>:rtt_ms=...`
    is read too. Values that are not numbers, and negative ones (unknown), are left out.
    """
    found: dict[str, dict[str, float]] = {}
    in_regions = False
    for line in text.splitlines():
        if line.startswith("#"):
            in_regions = line.lstrip("# ").strip().lower() == "regions"
            continue
        name, _, values = line.partition(":")
        if not in_regions or not values:
            continue
        if name == "region":
            name, _, values = values.partition("=")
        elif name.startswith("region_"):
            name = name.removeprefix("region_")
        else:
            continue
        found[name] = {k: v for k, v in map(_number_field, values.split(",")) if v >= 0}
    return found


def _number_field(text: str) -> tuple[str, float]:
    key, _, value = text.partition("=")
    try:
        return key.strip(), float(value)
    except ValueError:
        return key.strip(), -1.0


def sample(node: DemoNode, tls: ssl.SSLContext | None = None) -> Sample | None:
    """The node's INFO, or None if it does not answer (down, or still starting)."""
    if not node.running():
        return None
    try:
        with Connection("127.0.0.1", node.port, INFO_TIMEOUT_S, tls) as conn:
            raw = conn.execute("INFO", "stats", "keyspace", "geocache", "regions")
    except (OSError, ReplyError):
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    info = parse_info(text)
    stats, geo = info.get("stats", {}), info.get("geocache", {})
    db0 = info.get("keyspace", {}).get("db0", "keys=0")
    return Sample(
        keys=int(db0.split(",")[0].partition("=")[2] or 0),
        hits=int(stats.get("keyspace_hits", 0)),
        misses=int(stats.get("keyspace_misses", 0)),
        ready=geo.get("cluster_ready") == "1",
        alive=int(geo.get("cluster_members_alive", 0)),
        regions=parse_regions(text),
    )


def region_lag_ms(samples: list[Sample], remote: str) -> float | None:
    """A region's lag to `remote`: the worst p99 of its nodes that shipped something."""
    lags = [
        s.regions[remote]["lag_p99_ms"]
        for s in samples
        if "lag_p99_ms" in s.regions.get(remote, {}) and s.regions[remote].get("acked", 1) > 0
    ]
    return max(lags, default=None)


# -- the view ---------------------------------------------------------------------------------


@dataclass
class View:
    """Samples every node each refresh and turns them into the table."""

    regions: list[str]
    nodes: list[DemoNode]
    work: dict[str, Workload]
    tls: ssl.SSLContext | None = None
    note: str = ""
    samples: dict[str, Sample | None] = field(default_factory=dict)
    _sent: dict[str, int] = field(default_factory=dict)
    _last_t: float = field(default_factory=time.monotonic)
    _ops: dict[str, float] = field(default_factory=dict)

    def refresh(self) -> None:
        """Sample every node; ops/s are the region's clients' answered commands (nodes'
        own counts would include their replication and membership traffic)."""
        now = time.monotonic()
        dt, self._last_t = max(now - self._last_t, 1e-6), now
        self.samples = {n.node_id: sample(n, self.tls) for n in self.nodes}
        for region, work in self.work.items():
            sent = work.sent
            self._ops[region] = (sent - self._sent.get(region, 0)) / dt
            self._sent[region] = sent

    def average(self, elapsed_s: float) -> None:
        """Ops/s over the whole run, for the final table (the last moment is idle)."""
        for region, work in self.work.items():
            self._ops[region] = work.sent / max(elapsed_s, 1e-6)

    def _of(self, region: str) -> list[DemoNode]:
        return [n for n in self.nodes if n.region == region]

    def region_samples(self, region: str) -> list[Sample]:
        return [s for n in self._of(region) if (s := self.samples.get(n.node_id))]

    def lag_text(self, region: str, remote: str) -> str:
        if region == remote:
            return "[dim]·[/dim]"
        lag = region_lag_ms(self.region_samples(region), remote)
        return "-" if lag is None else f"{lag:,.0f} ms"

    def table(self, title: str) -> Table:
        table = Table(title=f"{title} {self.note}")
        for column in ("region", "up", "keys", "hits", "ops/s"):
            table.add_column(column, justify="right")
        for remote in self.regions:
            table.add_column(f"→ {remote}", justify="right", no_wrap=True)
        for region in self.regions:
            samples = self.region_samples(region)
            hits, misses = sum(s.hits for s in samples), sum(s.misses for s in samples)
            copies = min(REPLICAS, len(samples)) or 1
            row = [
                region,
                f"{len(samples)}/{len(self._of(region))}",
                f"{sum(s.keys for s in samples) // copies:,}",
                f"{hits / (hits + misses):.1%}" if hits + misses else "-",
                f"{self._ops.get(region, 0.0):,.0f}",
            ]
            table.add_row(*row, *(self.lag_text(region, r) for r in self.regions))
        sent = sum(w.sent for w in self.work.values())
        errors = sum(w.errors for w in self.work.values())
        failovers = sum(w.failovers for w in self.work.values())
        table.caption = (
            f"{sent:,} commands sent, {errors} errors, {failovers} failovers\n"
            "keys: copies held / copies per key. → region: replication lag to it, p99"
        )
        return table


# -- running it -------------------------------------------------------------------------------


def _wait_ready(nodes: list[DemoNode], tls: ssl.SSLContext | None = None) -> None:
    """Until every node answers, says it is ready, and sees every member alive."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for node in nodes:
            if not node.running():
                raise RuntimeError(f"{node.node_id} exited (log: {node.log_path})")
        samples = [sample(n, tls) for n in nodes]
        if all(s is not None and s.ready and s.alive == len(nodes) for s in samples):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the nodes were not all ready within {READY_TIMEOUT_S:.0f} s")


def run_demo(
    duration_s: float,
    keys: int,
    live: bool = True,
    regions: int = 3,
    nodes_per_region: int = 3,
    rate: float = 2000.0,
    keep: bool = False,
) -> int:
    """Run the demo; 0 if every node stopped with 0 and no command failed. With `keep`,
    the nodes run on after the workload until Ctrl-C (or SIGTERM)."""
    console = Console()
    if not 1 <= regions <= len(REGIONS) or min(nodes_per_region, keys, rate) < 1:
        console.print(f"regions is 1 to {len(REGIONS)}; nodes per region, keys, rate >= 1")
        return 2
    names = list(REGIONS[:regions])
    work = {r: Workload(r, [], keys, rate, seed=i) for i, r in enumerate(names)}
    relays, nodes, codes = RelaySet(), list[DemoNode](), list[int]()
    outcome = 0
    # The nodes run in sessions of their own, so a SIGTERM or SIGHUP to the demo must
    # stop them as Ctrl-C does, or they would outlive it.
    handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        relays.start()
        logdir = tempfile.mkdtemp(prefix="geocache-demo-")
        certs = make_certs(Path(logdir) / "tls", ["127.0.0.1", "localhost"])
        tls = demo_client_tls(certs)
        nodes = make_nodes(names, nodes_per_region, logdir, relays, certs)
        pids = " ".join(f"{n.node_id}={n.start()}" for n in nodes)
        console.print(
            f"started {len(nodes)} nodes (logs: {logdir}); pids: {pids}",
            soft_wrap=True,  # one line whatever the width: scripts and tests read the PIDs
        )
        _describe(console, names, relays)
        console.print(
            f"TLS on every link: clients and the table (client certificate), node to node"
            f" (mutual TLS, through the relays); certificates in {certs.directory}",
            soft_wrap=True,
        )
        _wait_ready(nodes, tls)
        console.print(f"all {len(nodes)} nodes ready; workload for {duration_s:g} s")
        url = dashboard_url(nodes)
        console.print(f"dashboard: {url}", soft_wrap=True)
        for w in work.values():
            w.nodes = [n for n in nodes if n.region == w.region]
            w.tls = tls
        view = View(names, nodes, work, tls)
        _play(console, view, duration_s, live)
        _summary(console, view)
        if keep:
            _keep_running(console, url)
    except KeyboardInterrupt:
        console.print("interrupted")
        outcome = 130
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        outcome = 1
    finally:
        for w in work.values():
            w.stop.set()
        # Cleanup is bounded (SIGKILL after STOP_TIMEOUT_S); a second Ctrl-C must not
        # cut it short and leave nodes running.
        handlers[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
        codes = stop_all(nodes)
        relays.stop()
        console.print(f"nodes stopped with exit codes {codes}; relays stopped", soft_wrap=True)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if outcome:
        return outcome
    failed = any(codes) or any(w.errors for w in work.values())
    return 1 if failed else 0


def dashboard_url(nodes: list[DemoNode]) -> str:
    port = next(n.http_port for n in nodes if n.http_port)
    return f"http://127.0.0.1:{port}/"


def _keep_running(console: Console, url: str) -> None:
    """Until Ctrl-C or SIGTERM (both raise KeyboardInterrupt here): the normal end."""
    console.print(
        f"workload done; the nodes keep running: dashboard at {url}; Ctrl-C stops them",
        soft_wrap=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _describe(console: Console, names: list[str], relays: RelaySet) -> None:
    pairs = [
        f"{a}↔{b} {one_way_ms(a, b):g} ms" for i, a in enumerate(names) for b in names[i + 1 :]
    ]
    if pairs:
        console.print(
            f"{len(relays.relays())} relays, one-way delay ±{JITTER_MS:g} ms: {', '.join(pairs)}"
        )


@dataclass
class Crash:
    """The scenario: kill one node a third of the way in, restart it two thirds in."""

    victim: DemoNode | None
    duration_s: float
    killed: bool = False
    restarted_at: float | None = None
    back: bool = False

    def step(self, elapsed_s: float, view: View) -> str | None:
        """Act if it is time; what happened, if anything (a note for the table)."""
        node = self.victim
        if node is None or self.back:
            return None
        if not self.killed and elapsed_s > self.duration_s / 3:
            node.kill()
            self.killed = True
            return f"{node.node_id} killed (SIGKILL); reads go on."
        if self.killed and self.restarted_at is None and elapsed_s > 2 * self.duration_s / 3:
            self.restarted_at = elapsed_s
            return f"{node.node_id} restarted (pid {node.start()}); it rejoins."
        seen = view.samples.get(node.node_id)
        if self.restarted_at is not None and seen is not None and seen.ready:
            self.back = True
            took_s = elapsed_s - self.restarted_at
            return f"{node.node_id} is back: ready {took_s:.1f} s after its restart."
        return None

    @property
    def coming_back(self) -> bool:
        """Restarted and not ready yet: the demo waits for it (it would not survive a
        SIGTERM before its signal handlers are set, and the point is to see it back)."""
        return self.restarted_at is not None and not self.back


def _play(console: Console, view: View, duration_s: float, live: bool) -> None:
    """Run the workloads and the crash, showing the table, until the duration is over
    and the restarted node is back (or READY_TIMEOUT_S later)."""
    start = time.monotonic()
    threads = [
        threading.Thread(target=w.run, args=(start + duration_s,), daemon=True)
        for w in view.work.values()
    ]
    for thread in threads:
        thread.start()
    first = view.work[view.regions[0]].nodes
    crash = Crash(first[-1] if len(first) > 1 else None, duration_s)
    title = f"geocache demo: {len(view.regions)} regions of {len(first)} nodes."
    screen = Live(console=console, auto_refresh=False) if live else None
    wait_until = start + duration_s + READY_TIMEOUT_S
    try:
        with screen or nullcontext():
            while any(t.is_alive() for t in threads) or (
                crash.coming_back and time.monotonic() < wait_until
            ):
                time.sleep(REFRESH_S)
                note = crash.step(time.monotonic() - start, view)
                if note:
                    view.note = note
                    console.print(note)
                view.refresh()
                if not any(t.is_alive() for t in threads):
                    view.average(duration_s)  # the final table: the run's mean
                if screen is not None:
                    screen.update(view.table(title), refresh=True)
    finally:
        for w in view.work.values():
            w.stop.set()
        for thread in threads:
            thread.join(STOP_TIMEOUT_S)
    if screen is None:
        console.print(view.table(title))


def _summary(console: Console, view: View) -> None:
    for region in view.regions:
        w = view.work[region]
        lags = [f"→ {r} {view.lag_text(region, r)}" for r in view.regions if r != region]
        lag = ("; lag p99 " + ", ".join(lags)) if lags else ""
        console.print(
            f"{region}: {w.sent:,} commands, {w.errors} errors, {w.failovers} failovers{lag}",
            soft_wrap=True,
        )
        if w.last_error:
            console.print(f"  last error: {w.last_error}")
    work = view.work.values()
    console.print(
        f"{sum(w.sent for w in work):,} commands, {sum(w.errors for w in work)} errors,"
        f" {sum(w.failovers for w in work)} failovers"
    )
