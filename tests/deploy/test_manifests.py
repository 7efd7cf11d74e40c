"""The deploy material: the Kubernetes manifests validate against the schemas of every
Kubernetes minor version we support and hold together (selectors, probes, sizing, TLS,
the regions alike); the compose file and the systemd unit say what the README says,
with TLS on every link.

Helm could not be installed on this project's machines (no Debian package, no wheel
with the helm binary, a Go too old to build it), so the material is plain manifests,
one file per region, checked here as they are applied.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from geocache.config import NodeConfig, coerce, parse_size
from support.procs import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
# The minor versions upstream and the large providers still run (kubernetes-validate
# 1.37.0 carries schemas from 1.25 up): 1.30 to 1.37.
VERSIONS = [f"1.{minor}.0" for minor in range(30, 38)]
REGIONS = {"eu-west": "us-east", "us-east": "eu-west"}
# The sizing rule the README gives: 1.25 x max-bytes (entries are accounted within
# 10%, plus the origin's stale and negative shelves) + 256 MiB (interpreter, buffers).
SIZING_FACTOR, SIZING_BASE_MIB = 1.25, 256
# A node's graceful stop takes at most this long (handoff.LEAVE_HANDOFF_S 10 s, the
# streams' DRAIN_S 1 s, node.DRAIN_TIMEOUT_S 5 s, the leave announcement 0.3 s): the
# grace must exceed it.
STOP_BOUND_S = 20
_MEM = re.compile(r"(\d+)(Mi|Gi)")
# Where every way of deploying listens once TLS is on: RESP over TLS for clients and
# peers (the plaintext port is off), HTTPS.
TLS_PORT, HTTP_PORT = 7381, 7380
HEALTHCHECK = "/opt/geocache/healthcheck.py"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def by_kind(region: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs(KUBE / f"{region}.yaml")}


def env_of(statefulset: dict[str, Any]) -> dict[str, Any]:
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("region", sorted(REGIONS))
def test_the_manifests_validate(region: str, version: str) -> None:
    for doc in docs(KUBE / f"{region}.yaml"):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_a_region_holds_together(region: str) -> None:
    objects = by_kind(region)
    name = f"geocache-{region}"
    sts = objects["StatefulSet", name]
    peers = objects["Service", f"{name}-peers"]
    client = objects["Service", name]
    pdb = objects["PodDisruptionBudget", name]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels["geocache.io/region"] == region
    # Every selector picks this region's pods.
    for selector in (peers["spec"]["selector"], client["spec"]["selector"]):
        assert selector.items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The headless Service lists unready pods too: a node must find peers to be ready.
    assert sts["spec"]["serviceName"] == peers["metadata"]["name"]
    assert peers["spec"]["clusterIP"] == "None" and peers["spec"]["publishNotReadyAddresses"]
    spec = pod["spec"]
    container = spec["containers"][0]
    # The probes ask over HTTPS with the node's certificate (the image's health check).
    probes = {
        kind: container[f"{kind}Probe"]["exec"]["command"]
        for kind in ("readiness", "liveness", "startup")
    }
    assert probes == {
        "readiness": ["python3", HEALTHCHECK, "/readyz"],
        "liveness": ["python3", HEALTHCHECK, "/healthz"],
        "startup": ["python3", HEALTHCHECK, "/healthz"],
    }
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"resp-tls": TLS_PORT, "http": HTTP_PORT}
    # The Services reach those ports by name, and only those.
    assert [p["targetPort"] for p in peers["spec"]["ports"]] == ["resp-tls"]
    assert {p["targetPort"]: p["port"] for p in client["spec"]["ports"]} == ports
    assert spec["terminationGracePeriodSeconds"] > STOP_BOUND_S
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's user
    anti = spec["affinity"]["podAntiAffinity"]
    required = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    preferred = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert [t["topologyKey"] for t in required] == ["kubernetes.io/hostname"]
    assert [t["podAffinityTerm"]["topologyKey"] for t in preferred] == [
        "topology.kubernetes.io/zone"
    ]
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_settings_are_valid_and_seeds_reach_both_regions(region: str) -> None:
    sts = by_kind(region)["StatefulSet", f"geocache-{region}"]
    env = env_of(sts)
    assert env["GEOCACHE_CLUSTER_SECRET"]["secretKeyRef"]["name"] == "geocache-cluster"
    assert env["GEOCACHE_ADVERTISE_ADDR"] == f"$(POD_IP):{TLS_PORT}"
    seeds = env["GEOCACHE_SEEDS"].split(",")
    assert seeds[0] == f"dns:geocache-{region}-peers:{TLS_PORT}"
    assert f"geocache-{REGIONS[region]}-peers" in seeds[1]
    assert all(seed.endswith(f":{TLS_PORT}") for seed in seeds)
    plain = {k[len("GEOCACHE_") :].lower(): v for k, v in env.items() if isinstance(v, str)}
    plain.pop("advertise_addr")
    config = NodeConfig(cluster_secret="x", **{k: _typed(k, v) for k, v in plain.items()})
    assert config.region == region and config.network == "wan"
    assert_tls_everywhere(config)
    # Pods are dialled at their IPs, which the region's one certificate cannot name.
    assert not config.tls_cluster_check_name
    # The certificate files come from the region's TLS Secret, mounted read-only.
    pod = sts["spec"]["template"]["spec"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == f"geocache-{region}-tls" and mount["readOnly"]
    for path in (config.tls_cert_file, config.tls_key_file, config.tls_ca_cert_file):
        assert Path(path).parent == Path(mount["mountPath"])
        assert Path(path).name in ("tls.crt", "tls.key", "ca.crt")  # the Secret's keys
    # The files are the node's group's (fsGroup), readable by it alone.
    assert pod["securityContext"]["fsGroup"] == 10001
    assert volume["secret"]["defaultMode"] == 0o440


def assert_tls_everywhere(config: NodeConfig) -> None:
    """Clients and peers on TLS only, client certificates required, HTTPS."""
    assert (config.port, config.tls_port, config.http_port) == (0, TLS_PORT, HTTP_PORT)
    assert config.tls_cluster and config.tls_auth_clients == "yes" and config.https
    assert config.tls_cert_file and config.tls_key_file and config.tls_ca_cert_file


def _typed(name: str, value: str) -> object:
    return coerce(name, value)


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_memory_requests_follow_max_bytes(region: str) -> None:
    sts = by_kind(region)["StatefulSet", f"geocache-{region}"]
    max_bytes = parse_size(env_of(sts)["GEOCACHE_MAX_BYTES"])
    resources = sts["spec"]["template"]["spec"]["containers"][0]["resources"]
    requested = _mebibytes(resources["requests"]["memory"])
    assert requested >= SIZING_FACTOR * max_bytes / (1 << 20) + SIZING_BASE_MIB
    # Requests equal limits: the pod is never the first to go under memory pressure.
    assert resources["limits"]["memory"] == resources["requests"]["memory"]


def _mebibytes(text: str) -> int:
    match = _MEM.fullmatch(text)
    assert match, f"memory {text!r}: use Mi or Gi"
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def test_the_regions_differ_only_in_their_names() -> None:
    """us-east.yaml is eu-west.yaml with the names swapped: one cannot drift alone."""
    east = (KUBE / "us-east.yaml").read_text()
    west = (KUBE / "eu-west.yaml").read_text()
    swapped = east.replace("us-east", "\0").replace("eu-west", "us-east").replace("\0", "eu-west")
    assert swapped == west


def test_the_service_monitor_scrapes_the_client_services() -> None:
    (monitor,) = docs(KUBE / "servicemonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    )
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    for region in REGIONS:
        services = [o for (kind, _), o in by_kind(region).items() if kind == "Service"]
        scraped = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        assert [s["metadata"]["name"] for s in scraped] == [f"geocache-{region}"]
        assert endpoint["port"] in {p["name"] for p in scraped[0]["spec"]["ports"]}


# The compose file: what the README's Deploy section names.
COMPOSE_PORTS = {
    "eu-1": (7379, 7380),
    "eu-2": (7389, 7390),
    "us-1": (7479, 7480),
    "us-2": (7489, 7490),
    "ap-1": (7579, 7580),
    "ap-2": (7589, 7590),
}


def test_the_compose_file_has_three_regions_of_two_nodes_with_tls() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    certs = services.pop("certs")
    assert set(services) == set(COMPOSE_PORTS)
    regions: dict[str, list[str]] = {}
    for name, service in services.items():
        env = service["environment"]
        regions.setdefault(env["GEOCACHE_REGION"], []).append(name)
        assert env["GEOCACHE_NODE_ID"] == name
        assert env["GEOCACHE_ADVERTISE_ADDR"] == f"{name}:{TLS_PORT}"
        assert env["GEOCACHE_CLUSTER_SECRET"].startswith("${GEOCACHE_CLUSTER_SECRET:?")
        resp, http = COMPOSE_PORTS[name]
        assert service["ports"] == [f"127.0.0.1:{resp}:{TLS_PORT}", f"127.0.0.1:{http}:{HTTP_PORT}"]
        assert service["build"]["context"] == ".." and service["stop_grace_period"] == "30s"
        seeds = env["GEOCACHE_SEEDS"].split(",")
        assert all(seed.split(":")[0] in services for seed in seeds)
        assert all(seed.endswith(f":{TLS_PORT}") for seed in seeds)
        settings = {k[len("GEOCACHE_") :].lower(): v for k, v in env.items()}
        for unset in ("cluster_secret", "advertise_addr"):
            settings.pop(unset)
        config = NodeConfig(cluster_secret="x", **{k: coerce(k, v) for k, v in settings.items()})
        assert_tls_everywhere(config)
        assert config.tls_cluster_check_name  # peers are dialled by the names certs gives
        # The certificates: made by the certs service before any node starts, mounted.
        assert service["depends_on"]["certs"]["condition"] == "service_completed_successfully"
        assert service["volumes"] == ["./tls:/tls:ro"]
        assert Path(config.tls_cert_file).parent == Path("/tls")
    assert sorted(len(nodes) for nodes in regions.values()) == [2, 2, 2]
    # The certificate names every node, as peers dial it, and what the host dials.
    (script,) = certs["command"]
    hosts = re.search(r"--hosts (\S+)", script).group(1).split(",")  # type: ignore[union-attr]
    assert set(hosts) == {*services, "localhost", "127.0.0.1"}
    assert certs["volumes"] == ["./tls:/tls"]
    readme = (REPO_ROOT / "README.md").read_text()
    for resp, http in COMPOSE_PORTS.values():
        assert f"{resp}/{http}" in readme
    assert "deploy/tls/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_the_systemd_unit_runs_serve_and_stops_gracefully() -> None:
    unit = (DEPLOY / "systemd" / "geocache.service").read_text()
    assert "ExecStart=/opt/geocache/bin/geocache serve --config /etc/geocache/node.toml" in unit
    assert "KillSignal=SIGTERM" in unit
    stop_s = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1))  # type: ignore[union-attr]
    assert stop_s > STOP_BOUND_S
    from geocache.config import load

    config = load(str(DEPLOY / "systemd" / "node.toml"), environ={"GEOCACHE_CLUSTER_SECRET": "x"})
    assert config.region == "eu-west" and config.network == "wan"
    assert_tls_everywhere(config)
    assert config.peer_addr.endswith(f":{TLS_PORT}")
    assert all(seed.endswith(f":{TLS_PORT}") for seed in config.seed_list)
    # The files live where the unit lets the node read them, and SIGHUP reloads them.
    assert Path(config.tls_cert_file).parent == Path("/etc/geocache/tls")
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
