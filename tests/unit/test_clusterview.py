"""The cluster view: INFO samples and membership in, per-node numbers and lag out."""

from __future__ import annotations

from geocache.observability.clusterview import ClusterView, Info, Member, parse_info


def info(commands: int, keys: int, hits: int = 0, misses: int = 0, regions: str = "") -> Info:
    text = (
        f"# Stats\r\ntotal_commands_processed:{commands}\r\nkeyspace_hits:{hits}\r\n"
        f"keyspace_misses:{misses}\r\n\r\n# Memory\r\nused_memory:2048\r\nmaxmemory:0\r\n"
        f"\r\n# Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n"
        f"\r\n# Geocache\r\ncluster_ready:1\r\nhttp_port:0\r\n\r\n# Regions\r\n{regions}"
    )
    return parse_info(text)


EU1, EU2, US1 = (
    Member("eu-1", "eu", "127.0.0.1:1", "up", True),
    Member("eu-2", "eu", "127.0.0.1:2", "up"),
    Member("us-1", "us", "127.0.0.1:3", "up"),
)


def stream(lag: int, p50: int, p99: int, acked: int = 5, queued: int = 0) -> str:
    return (
        f"rtt_ms=40.0,lag_ms={lag},lag_p50_ms={p50},lag_p99_ms={p99},queued={queued},"
        f"resync=0,sent={acked},acked={acked}"
    )


def test_nodes_by_region_with_rates_and_hit_ratio() -> None:
    view = ClusterView()
    first = view.update([EU1, EU2, US1], {"eu-1": info(100, 10), "us-1": info(50, 10)}, 10.0)
    eu = first["regions"][0]
    assert [r["name"] for r in first["regions"]] == ["eu", "us"]
    assert [n["node_id"] for n in eu["nodes"]] == ["eu-1", "eu-2"]
    assert eu["nodes"][0]["ops_per_s"] is None  # one sample: no rate yet
    assert eu["nodes"][1] == {
        "node_id": "eu-2", "region": "eu", "addr": "127.0.0.1:2", "state": "up",
        "self": False, "stale": True,
    }  # fmt: skip
    second = view.update(
        [EU1, EU2, US1], {"eu-1": info(300, 12, hits=3, misses=1), "us-1": None}, 12.0
    )
    eu1 = second["regions"][0]["nodes"][0]
    assert eu1["ops_per_s"] == 100.0 and eu1["keys"] == 12 and eu1["hit_ratio"] == 0.75
    assert eu1["used_bytes"] == 2048 and eu1["self"] and not eu1["stale"]
    us1 = second["regions"][1]["nodes"][0]
    assert us1["stale"] and us1["keys"] == 10  # did not answer: its last numbers


def test_lag_is_the_worst_of_the_regions_nodes_that_shipped() -> None:
    view = ClusterView()
    infos = {
        "eu-1": info(1, 1, regions=f"region_us:{stream(40, 38, 60, queued=2)}\r\n"),
        "eu-2": info(1, 1, regions=f"region_us:{stream(55, 30, 90, queued=3)}\r\n"),
        "us-1": info(1, 1, regions=f"region_eu:{stream(0, 0, 0, acked=0)}\r\n"),
    }
    lags = {(x["from"], x["to"]): x for x in view.update([EU1, EU2, US1], infos, 1.0)["lag"]}
    assert lags["eu", "us"] == {
        "from": "eu", "to": "us", "lag_ms": 55, "lag_p50_ms": 38, "lag_p99_ms": 90,
        "rtt_ms": 40.0, "queued": 5, "resync": False,
    }  # fmt: skip
    assert lags["us", "eu"]["lag_ms"] is None  # nothing acknowledged yet


def test_a_node_that_is_down_does_not_count_for_lag() -> None:
    view = ClusterView()
    eu2_down = Member("eu-2", "eu", "127.0.0.1:2", "down")
    infos = {
        "eu-1": info(1, 1, regions=f"region_us:{stream(40, 38, 60)}\r\n"),
        "eu-2": info(1, 1, regions=f"region_us:{stream(900, 900, 900)}\r\n"),
    }
    view.update([EU1, EU2, US1], infos, 1.0)
    after = view.update([EU1, eu2_down, US1], {"eu-1": infos["eu-1"], "eu-2": None}, 2.0)
    lags = {(x["from"], x["to"]): x for x in after["lag"]}
    assert lags["eu", "us"]["lag_ms"] == 40
    assert after["regions"][0]["nodes"][1]["state"] == "down"


def test_members_that_membership_forgot_are_forgotten() -> None:
    view = ClusterView()
    view.update([EU1, US1], {"eu-1": info(1, 1), "us-1": info(1, 1)}, 1.0)
    view.update([EU1], {"eu-1": info(2, 1)}, 2.0)
    back = view.update([EU1, US1], {"eu-1": info(3, 1), "us-1": None}, 3.0)
    assert "keys" not in back["regions"][1]["nodes"][0]  # no numbers kept from before
