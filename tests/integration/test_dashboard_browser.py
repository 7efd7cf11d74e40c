"""The dashboard in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) against two regions of real node processes.

eu has three nodes, us two; every node reaches the other region through a delay relay
(its `--peer-map`), as in the demo. Every node has requirepass: the page without its
token asks for one, and with `#token=` in its URL it shows every node, lag numbers that
change (and follow the relay's delay when it is raised), a node killed with SIGKILL
turning down and coming back up after its restart, with the timeline saying so (and
the resyncs another node reports). That frame is saved as bench/results/dashboard.png
(the README shows it). Last, the serving node itself restarts: the page says it cannot
reach it, then shows the new node's timeline from its start.
"""

from __future__ import annotations

import random
import shutil
import signal
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from geocache.relay import RelaySet
from support.cluster import SECRET, start_at
from support.procs import ServerProcess, free_port

pytestmark = [pytest.mark.geocache_only, pytest.mark.slow, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "bench" / "results" / "dashboard.png"
TOKEN = "dash-s3cret"
REGIONS = {"eu": ["eu-1", "eu-2", "eu-3"], "us": ["us-1", "us-2"]}
ONE_WAY_MS, JITTER_MS, SLOW_MS = 20.0, 4.0, 120.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1200",
)
# Membership needs a few probe intervals to suspect, then the suspicion timeout, to
# declare a killed node dead; a restarted node rejoins, warms up and answers INFO.
STATE_CHANGE_S = 40.0


@dataclass
class World:
    nodes: dict[str, ServerProcess]
    args: dict[str, list[str]]
    relays: RelaySet
    http_port: int
    tmp: Path


def addr(node: ServerProcess) -> str:
    return f"{node.host}:{node.port}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Two regions joined through relays; eu-1 serves HTTP (the dashboard)."""
    ports = {node_id: free_port() for ids in REGIONS.values() for node_id in ids}
    region_of = {node_id: r for r, ids in REGIONS.items() for node_id in ids}
    seed = f"127.0.0.1:{ports['eu-1']}"
    http_port = free_port()
    nodes: dict[str, ServerProcess] = {}
    with RelaySet() as relays:
        for node_id, port in ports.items():
            for source in REGIONS:
                if source != region_of[node_id]:
                    relays.add(f"127.0.0.1:{port}", ONE_WAY_MS, JITTER_MS, source, seed=port)
        args = {}
        for node_id in ports:
            routes = relays.routes(region_of[node_id])
            args[node_id] = [
                *("--node-id", node_id, "--region", region_of[node_id]),
                *("--cluster-secret", SECRET, "--requirepass", TOKEN, "--log-level", "warning"),
                *("--peer-map", ",".join(f"{a}={v}" for a, v in sorted(routes.items()))),
                *(("--seeds", seed) if node_id != "eu-1" else ()),
                *(("--http-port", str(http_port)) if node_id == "eu-1" else ()),
                # eu-2 serves HTTP too: its own events (resyncs) join eu-1's timeline.
                *(("--http-port", str(free_port())) if node_id == "eu-2" else ()),
            ]
        try:
            for node_id, port in ports.items():
                nodes[node_id] = start_at(port, tmp_path, args[node_id])
            yield World(nodes, args, relays, http_port, tmp_path)
        finally:
            for node in nodes.values():
                node.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = _tool("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(_tool("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (scripts/setup.sh installs chromium, chromium-driver)"
    return path


class Writer:
    """Writes and reads in both regions (at nodes that stay up) until stopped: lag to
    measure, hits to count."""

    def __init__(self, nodes: list[ServerProcess]) -> None:
        self._clients = [
            redis.Redis(n.host, n.port, password=TOKEN, socket_timeout=2) for n in nodes
        ]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.written = 0

    def _run(self) -> None:
        rng = random.Random(7)
        while not self._stop.wait(0.01):  # about 100 writes a second
            client = self._clients[self.written % len(self._clients)]
            key = f"k{rng.randrange(500)}"
            try:
                client.set(key, "v" * 50, ex=300)
                client.get(f"k{rng.randrange(600)}")
                self.written += 1
            except redis.RedisError:
                pass

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for client in self._clients:
            client.close()


def wait_for(check: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = check()
        except (StaleElementReferenceException, WebDriverException):
            found = None  # the page redrew between finding and reading: look again
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"the page did not show {what} within {timeout_s:g} s")


def states(driver: webdriver.Chrome) -> dict[str, str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#regions tr[data-node]")
    return {r.get_attribute("data-node") or "": r.get_attribute("data-state") or "" for r in rows}


def lag_ms(driver: webdriver.Chrome, source: str, target: str) -> float | None:
    cells = driver.find_elements(
        By.CSS_SELECTOR, f'#lag td[data-from="{source}"][data-to="{target}"]'
    )
    text = cells[0].get_attribute("data-lag") if cells else None
    return float(text) if text else None


def events(driver: webdriver.Chrome) -> list[tuple[str, str]]:
    return [(kind, subject) for kind, subject, _ in reported(driver)]


def reported(driver: webdriver.Chrome) -> list[tuple[str, str, str]]:
    """(kind, subject, the node that reported it) of each event shown."""
    items = driver.find_elements(By.CSS_SELECTOR, "#events li[data-kind]")
    found = []
    for item in items:
        kind, subject, reporter = (
            item.get_attribute(f"data-{name}") or "" for name in ("kind", "subject", "reporter")
        )
        found.append((kind, subject, reporter))
    return found


def lag_histogram_count(http_port: int, region: str) -> float:
    """Writes counted in /metrics' lag histogram to `region` (its +Inf bucket)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "geocache_region_lag_seconds":
            assert family.type == "histogram"
            for sample in family.samples:
                if sample.labels == {"region": region, "le": "+Inf"}:
                    return sample.value
    raise AssertionError(f"no lag histogram for {region} in /metrics")


def test_the_dashboard_shows_the_cluster_live(world: World, browser: webdriver.Chrome) -> None:
    url = f"http://127.0.0.1:{world.http_port}/"
    everyone = {node_id: "up" for ids in REGIONS.values() for node_id in ids}

    browser.get(url)  # no token: the page asks for one and shows nothing
    wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), 10, "the token form")
    assert not states(browser)

    browser.get(url + "dashboard#token=" + TOKEN)
    wait_for(lambda: states(browser) == everyone, 30, f"every node up: {everyone}")
    assert "#token" not in browser.current_url  # taken out of the address bar
    assert browser.find_element(By.ID, "status").text == "live"

    with Writer([world.nodes["eu-1"], world.nodes["us-1"]]):
        # Lag numbers appear and change from second to second.
        seen: set[float] = set()

        def lags_change() -> bool:
            for pair in (("eu", "us"), ("us", "eu")):
                lag = lag_ms(browser, *pair)
                if lag is not None:
                    seen.add(lag)
            return len(seen) >= 3

        wait_for(lags_change, 30, "lag numbers that change")
        assert all(0 <= lag < 1000 for lag in seen), seen
        assert lag_histogram_count(world.http_port, "us") > 0
        # A slower link between the regions: the page follows it.
        for node_id in REGIONS["us"]:
            relay = world.relays.relay(addr(world.nodes[node_id]), "eu")
            world.relays.call(relay.set_delay, SLOW_MS, JITTER_MS)
        wait_for(
            lambda: (lag_ms(browser, "eu", "us") or 0) >= SLOW_MS,
            30,
            f"eu -> us lag past {SLOW_MS:g} ms",
        )
        for node_id in REGIONS["us"]:
            relay = world.relays.relay(addr(world.nodes[node_id]), "eu")
            world.relays.call(relay.set_delay, ONE_WAY_MS, JITTER_MS)

        victim = world.nodes["eu-3"]
        victim.proc.send_signal(signal.SIGKILL)  # a PID this test started
        victim.proc.wait(10)
        wait_for(lambda: states(browser).get("eu-3") == "down", STATE_CHANGE_S, "eu-3 down")
        kinds = {kind for kind, subject in events(browser) if subject == "eu-3"}
        assert "dead" in kinds, events(browser)
        # eu-3's death makes eu's streams resync (its queued writes died with it): eu-1's
        # own, and eu-2's, which the timeline takes from eu-2.
        for reporter in ("eu-1", "eu-2"):
            wait_for(
                lambda r=reporter: ("resync_started", "us", r) in reported(browser),
                STATE_CHANGE_S,
                f"a resync of eu -> us reported by {reporter}",
            )

        world.nodes["eu-3"] = start_at(victim.port, world.tmp, world.args["eu-3"])
        wait_for(lambda: states(browser) == everyone, STATE_CHANGE_S, "eu-3 back up")
        wait_for(
            lambda: ("rejoined", "eu-3") in events(browser), 10, "eu-3 rejoined in the timeline"
        )
        row = browser.find_element(By.CSS_SELECTOR, '#regions tr[data-node="eu-3"]')
        wait_for(
            lambda: row.find_element(By.CSS_SELECTOR, '[data-field="keys"]').text != "-",
            STATE_CHANGE_S,
            "eu-3's numbers again",
        )
        time.sleep(1.5)  # one more refresh with the writes flowing, for the picture
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1280, max(int(height) + 40, 800))
        time.sleep(1.2)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))

    # The serving node itself restarts: the page says it cannot reach it, then shows the
    # new node's timeline from its start (the old one's events are gone with it).
    served = world.nodes["eu-1"]
    served.stop()

    def unreachable() -> bool:
        return browser.find_element(By.ID, "status").get_attribute("data-state") == "error"

    wait_for(unreachable, 20, "the node unreachable")
    # Back with a seed, as a restarted node would be deployed: the others saw it leave.
    restart = [*world.args["eu-1"], "--seeds", addr(world.nodes["eu-2"])]
    world.nodes["eu-1"] = start_at(served.port, world.tmp, restart)

    def new_timeline() -> bool:
        shown = events(browser)
        return not unreachable() and ("dead", "eu-3") not in shown

    wait_for(new_timeline, 20, "the page back, the old node's events gone")
    wait_for(
        lambda: states(browser) == everyone and ("joined", "us-1") in events(browser),
        STATE_CHANGE_S,
        "every node up again, in the new node's timeline",
    )
