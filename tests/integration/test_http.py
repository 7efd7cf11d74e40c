"""The HTTP API of a real node process, and its agreement with RESP (redis-py).

A key written over HTTP is read over RESP and the reverse, with its TTL; binary keys and
values round-trip byte for byte; every error is a JSON `{"error": ...}` with the status
the issue names. Requests go through `http.client` so the path reaches the node exactly
as written (no client-side re-encoding or `..` resolution).

`start_http_node` and `HttpNode` are reused by the metrics and OpenAPI tests.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
import redis

from support import HOST, ServerProcess, free_port, start_geocache

pytestmark = pytest.mark.geocache_only

# A node answers PING before its HTTP listener is necessarily up; allow it this long.
HTTP_READY_S = 20.0
# Tries when the HTTP port we picked was taken between the probe and the node's bind.
START_ATTEMPTS = 3
# Budget for a real process to catch up (expiry), polled, never slept through.
DEADLINE_S = 10.0
TIMEOUT_S = 10.0
TOKEN = "http-s3cret"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)

    def error(self) -> str:
        data = self.json()
        assert isinstance(data, dict) and set(data) == {"error"}, data
        text = data["error"]
        assert isinstance(text, str) and text
        return text


@dataclass
class HttpNode:
    server: ServerProcess
    http_port: int

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        conn = http.client.HTTPConnection(HOST, self.http_port, timeout=TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            data = reply.read()
            found = {k.lower(): v for k, v in reply.getheaders()}
            return Response(reply.status, found, data)
        finally:
            conn.close()

    def redis(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(HOST, self.server.port, socket_timeout=TIMEOUT_S, **kwargs)  # type: ignore[arg-type]


def key_path(key: bytes, query: str = "") -> str:
    return "/v1/keys/" + quote_from_bytes(key, safe="") + (f"?{query}" if query else "")


def poll(condition: Callable[[], bool], timeout_s: float = DEADLINE_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _http_up(node: HttpNode) -> bool:
    try:
        return node.request("GET", "/healthz").status == 200
    except OSError:
        return False


def start_http_node(workdir: Path, *args: str) -> HttpNode:
    """A node process with HTTP on a free port, answering /healthz."""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        node = HttpNode(start_geocache(workdir, ["--http-port", str(port), *args]), port)
        if _wait_http(node):
            return node
        node.server.stop()
        if "in use" not in node.server.log_text().lower():
            raise RuntimeError(f"HTTP never came up:\n{node.server.log_text()[-4000:]}")
    raise RuntimeError("no free HTTP port after retries")


def _wait_http(node: HttpNode) -> bool:
    poll(lambda: _http_up(node) or not node.server.is_running(), HTTP_READY_S)
    return _http_up(node)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    started = start_http_node(tmp_path_factory.mktemp("http"), "--region", "eu-test")
    yield started
    started.server.stop()


@pytest.fixture
def r(node: HttpNode) -> Iterator[redis.Redis]:
    client = node.redis()
    yield client
    client.close()


# -- keys --------------------------------------------------------------------------------

BINARY_VALUE = bytes(range(256)) * 4 + b"\r\n\x00end"


@pytest.mark.parametrize(
    "key",
    [b"plain", b"with/slash/inside", b"sp ace+plus%pct", b"\x00\xff\r\n..", b"..", b"\xe2\x82\xac"],
    ids=["plain", "slash", "space-plus-pct", "binary", "dotdot", "utf8"],
)
def test_http_write_is_read_over_resp_byte_for_byte(
    node: HttpNode, r: redis.Redis, key: bytes
) -> None:
    put = node.request("PUT", key_path(key), BINARY_VALUE)
    assert put.status in (201, 204), put
    assert r.get(key) == BINARY_VALUE
    got = node.request("GET", key_path(key))
    assert got.status == 200 and got.body == BINARY_VALUE
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["etag"] == put.headers["etag"]
    assert "x-geocache-ttl-ms" not in got.headers


def test_resp_write_is_read_over_http_with_its_ttl(node: HttpNode, r: redis.Redis) -> None:
    key = b"resp\x00side/\xfe"
    assert r.set(key, BINARY_VALUE, ex=100)
    got = node.request("GET", key_path(key))
    assert got.status == 200 and got.body == BINARY_VALUE
    ttl_ms = int(got.headers["x-geocache-ttl-ms"])
    assert 90_000 < ttl_ms <= 100_000
    assert r.pttl(key) <= ttl_ms


def test_http_ttl_is_seen_over_resp_and_expires(node: HttpNode, r: redis.Redis) -> None:
    assert node.request("PUT", key_path(b"long", "ttl=100"), b"v").status in (201, 204)
    assert 90_000 < r.pttl(b"long") <= 100_000
    assert node.request("PUT", key_path(b"short", "ttl=1"), b"v").status in (201, 204)
    assert 0 < r.pttl(b"short") <= 1_000
    assert poll(lambda: node.request("GET", key_path(b"short")).status == 404)
    assert r.get(b"short") is None


def test_put_replaces_and_etag_is_the_new_version(node: HttpNode) -> None:
    first = node.request("PUT", key_path(b"ver"), b"1")
    second = node.request("PUT", key_path(b"ver"), b"2")
    assert first.status in (201, 204) and second.status == 204
    assert second.body == b""
    tags = [int(resp.headers["etag"].strip('"')) for resp in (first, second)]
    assert tags[1] > tags[0]
    assert node.request("GET", key_path(b"ver")).headers["etag"] == second.headers["etag"]


def test_put_of_a_new_key_is_201(node: HttpNode) -> None:
    assert node.request("PUT", key_path(b"fresh-201"), b"x").status == 201


def test_put_without_ttl_clears_a_previous_ttl(node: HttpNode, r: redis.Redis) -> None:
    node.request("PUT", key_path(b"persist", "ttl=100"), b"a")
    node.request("PUT", key_path(b"persist"), b"b")
    assert r.pttl(b"persist") == -1


def test_head_gives_headers_without_the_value(node: HttpNode) -> None:
    node.request("PUT", key_path(b"head-me", "ttl=50"), b"12345")
    head = node.request("HEAD", key_path(b"head-me"))
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == "5"
    assert head.headers["etag"].startswith('"') and "x-geocache-ttl-ms" in head.headers
    assert node.request("HEAD", key_path(b"no-such-key")).status == 404


def test_if_none_match_gives_304(node: HttpNode) -> None:
    etag = node.request("PUT", key_path(b"cond"), b"v").headers["etag"]
    same = node.request("GET", key_path(b"cond"), headers={"If-None-Match": etag})
    assert same.status == 304 and same.body == b""
    other = node.request("GET", key_path(b"cond"), headers={"If-None-Match": '"1", "2"'})
    assert other.status == 200 and other.body == b"v"


def test_delete_over_http_is_seen_over_resp(node: HttpNode, r: redis.Redis) -> None:
    r.set(b"gone", b"v")
    assert node.request("DELETE", key_path(b"gone")).status == 204
    assert r.exists(b"gone") == 0
    missing = node.request("DELETE", key_path(b"gone"))
    assert missing.status == 404 and missing.error()
    r.set(b"gone", b"back")
    assert node.request("GET", key_path(b"gone")).body == b"back"
    r.delete(b"gone")
    assert node.request("GET", key_path(b"gone")).status == 404


def test_get_of_a_missing_key_is_a_json_404(node: HttpNode) -> None:
    assert node.request("GET", key_path(b"never-written")).error()


@pytest.mark.parametrize("ttl", ["0", "-1", "abc", "1.5", "", "1e3", "+5", f"{10**20}"])
def test_bad_ttl_is_400_and_writes_nothing(node: HttpNode, r: redis.Redis, ttl: str) -> None:
    response = node.request("PUT", key_path(b"bad-ttl", f"ttl={ttl}"), b"v")
    assert response.status == 400 and "ttl" in response.error()
    assert r.get(b"bad-ttl") is None


def test_unknown_paths_and_methods_get_json_errors(node: HttpNode) -> None:
    missing = node.request("GET", "/v2/nothing")
    assert missing.status == 404 and missing.error()
    wrong = node.request("PATCH", key_path(b"k"))
    assert wrong.status == 405 and wrong.error()
    assert set(wrong.headers["allow"].split(",")) == {"GET", "HEAD", "PUT", "DELETE"}
    assert node.request("POST", "/healthz").status == 405
    assert node.request("GET", "/v1/keys/").status == 404


# -- node endpoints ----------------------------------------------------------------------


def test_healthz_readyz_stats_cluster(node: HttpNode, r: redis.Redis) -> None:
    health = node.request("GET", "/healthz").json()
    assert health == {"status": "ok", "node_id": f"{HOST}:{node.server.port}"}
    ready = node.request("GET", "/readyz")
    assert ready.status == 200 and ready.json() == {"status": "ready", "node_id": health["node_id"]}  # type: ignore[index]
    r.set(b"stats-key", b"v")
    stats = node.request("GET", "/v1/stats").json()
    assert isinstance(stats, dict)
    assert stats["region"] == "eu-test" and stats["keys"] >= 1 and stats["used_bytes"] > 0
    assert stats["http_requests"] >= 2 and stats["commands_processed"] >= 1
    cluster = node.request("GET", "/v1/cluster").json()
    assert cluster == {
        "node_id": health["node_id"],  # type: ignore[index]
        "region": "eu-test",
        "nodes": [
            {
                "node_id": health["node_id"],  # type: ignore[index]
                "region": "eu-test",
                "address": HOST,
                "resp_port": node.server.port,
                "http_port": node.http_port,
                "state": "up",
                "self": True,
            }
        ],
        "regions": {},  # a standalone node streams to no other region
    }


def test_openapi_lists_every_route(node: HttpNode) -> None:
    document = node.request("GET", "/openapi.json").json()
    assert isinstance(document, dict) and document["openapi"].startswith("3.0")
    assert set(document["paths"]) == {
        "/v1/keys/{key}",
        "/v1/stats",
        "/v1/cluster",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/dashboard",
        "/v1/events",
        "/",
        "/dashboard",
        "/dashboard.js",
        "/dashboard.css",
    }
    assert set(document["paths"]["/v1/keys/{key}"]) == {
        "parameters",
        "get",
        "head",
        "put",
        "delete",
    }
    assert "security" not in document  # no requirepass on this node


# -- limits and auth (their own nodes) ----------------------------------------------------


def test_value_and_key_limits(tmp_path: Path) -> None:
    node = start_http_node(tmp_path, "--max-value-bytes", "1024", "--max-key-bytes", "16")
    try:
        assert node.request("PUT", key_path(b"v"), b"x" * 1024).status == 201
        over = node.request("PUT", key_path(b"v"), b"x" * 1025)
        assert over.status == 413 and "1024" in over.error()
        assert node.request("GET", key_path(b"v")).body == b"x" * 1024
        assert node.request("PUT", key_path(b"k" * 16), b"ok").status == 201
        long_key = node.request("PUT", key_path(b"k" * 17), b"no")
        assert long_key.status == 414 and "16" in long_key.error()
        assert node.request("GET", key_path(b"k" * 17)).status == 414
        with node.redis() as client:
            assert client.exists(b"k" * 17) == 0
    finally:
        node.server.stop()


def test_entry_over_max_bytes_is_413(tmp_path: Path) -> None:
    node = start_http_node(tmp_path, "--max-bytes", "2048")
    try:
        too_big = node.request("PUT", key_path(b"big"), b"x" * 4096)
        assert too_big.status == 413 and too_big.error()
    finally:
        node.server.stop()


def test_default_ttl_applies_to_http_writes(tmp_path: Path) -> None:
    node = start_http_node(tmp_path, "--default-ttl-s", "60")
    try:
        node.request("PUT", key_path(b"d"), b"v")
        with node.redis() as client:
            assert 50_000 < client.pttl(b"d") <= 60_000
    finally:
        node.server.stop()


@pytest.mark.parametrize("raw", ["%zz", "a%2", "%", "%g0b", "ok%2Fthen%x"])
def test_a_key_with_an_invalid_percent_escape_is_400(node: HttpNode, raw: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        reply = node.request(method, "/v1/keys/" + raw, b"v")
        assert reply.status == 400 and "%" in reply.error(), (method, raw)
    # The literal key `%zz` has exactly one name: `%25zz`.
    assert node.request("PUT", "/v1/keys/%25zz", b"pct").status in (201, 204)
    assert node.request("GET", "/v1/keys/%25zz").body == b"pct"


def test_requirepass_needs_the_bearer_token(tmp_path: Path) -> None:
    node = start_http_node(tmp_path, "--requirepass", TOKEN)
    good = {"Authorization": f"Bearer {TOKEN}"}
    try:
        for method, path in [("GET", key_path(b"a")), ("PUT", key_path(b"a")),
                             ("DELETE", key_path(b"a")), ("GET", "/v1/stats"),
                             ("GET", "/v1/cluster"), ("GET", "/metrics")]:  # fmt: skip
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                denied = node.request(method, path, b"v", headers)
                assert denied.status == 401 and denied.error(), (method, path, headers)
                assert denied.headers["www-authenticate"].startswith("Bearer")
        assert node.request("HEAD", key_path(b"a")).status == 401
        for path in ("/healthz", "/readyz", "/openapi.json"):
            assert node.request("GET", path).status == 200
        assert node.request("PUT", key_path(b"a"), b"secret-value", good).status == 201
        assert node.request("GET", key_path(b"a"), headers=good).body == b"secret-value"
        with node.redis(password=TOKEN) as client:
            assert client.get(b"a") == b"secret-value"
        document = node.request("GET", "/openapi.json").json()
        assert isinstance(document, dict) and document["security"] == [{"bearer": []}]
        # Every refusal above (6 paths x 3 headers, and the HEAD) is counted and logged.
        metrics = node.request("GET", "/metrics", headers=good).body.decode()
        assert 'geocache_auth_failures_total{interface="http"} 19.0' in metrics
        assert "http authentication failed" in node.server.log_text()
    finally:
        node.server.stop()


def test_config_set_requirepass_applies_to_http_at_once(tmp_path: Path) -> None:
    node = start_http_node(tmp_path)
    try:
        assert node.request("GET", "/v1/stats").status == 200
        with node.redis() as client:
            client.config_set("requirepass", TOKEN)
        assert node.request("GET", "/v1/stats").status == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert node.request("GET", "/v1/stats", headers=good).status == 200
        document = node.request("GET", "/openapi.json").json()
        assert isinstance(document, dict) and "bearer" in document["components"]["securitySchemes"]
    finally:
        node.server.stop()
