"""The dashboard's HTTP side on a real node: the page and its files (open, offline, no
data), its JSON (`/v1/dashboard`, `/v1/events`) behind the bearer token when
requirepass is set, and `?since=` checked. The browser test drives the page itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from integration.test_http import HttpNode, poll, start_http_node

pytestmark = pytest.mark.geocache_only

TOKEN = "dash-token"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    started = start_http_node(tmp_path_factory.mktemp("dash"), "--region", "eu")
    yield started
    started.server.stop()


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("/", "text/html"),
        ("/dashboard", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ],
)
def test_the_page_and_its_files(node: HttpNode, path: str, media: str) -> None:
    reply = node.request("GET", path)
    assert reply.status == 200 and reply.headers["content-type"].startswith(media)
    assert reply.headers["cache-control"] == "no-cache" and reply.body


def test_the_page_works_offline(node: HttpNode) -> None:
    html = node.request("GET", "/").body.decode()
    script = node.request("GET", "/dashboard.js").body.decode()
    css = node.request("GET", "/dashboard.css").body.decode()
    for text in (html, script, css):
        assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing from elsewhere
        assert "http://" not in text.replace("http://127", "") and "https://" not in text
    assert 'src="dashboard.js"' in html and 'href="dashboard.css"' in html
    assert "innerHTML" not in script  # values go in as text


def test_the_json_of_a_lone_node(node: HttpNode) -> None:
    data = node.request("GET", "/v1/dashboard").json()
    assert isinstance(data, dict)
    assert data["node_id"] == data["regions"][0]["nodes"][0]["node_id"]
    assert data["region"] == "eu" and data["clustered"] is False
    (only,) = data["regions"][0]["nodes"]
    assert only["state"] == "up" and only["self"] and not only["stale"]
    assert only["keys"] == 0 and only["max_bytes"] > 0
    assert data["lag"] == [] and data["events"] == [] and data["last_seq"] == 0
    events = node.request("GET", "/v1/events?since=0").json()
    assert isinstance(events, dict) and events.pop("started_ms") > 0
    assert events == {"node_id": data["node_id"], "events": [], "last_seq": 0}


@pytest.mark.parametrize("since", ["-1", "x", "1.5", "1&since=2", "9" * 19])
def test_since_must_be_a_whole_number(node: HttpNode, since: str) -> None:
    for path in ("/v1/dashboard", "/v1/events"):
        reply = node.request("GET", f"{path}?since={since}")
        assert reply.status == 400 and "since" in reply.error()


def test_the_data_needs_the_token_and_the_page_does_not(tmp_path: Path) -> None:
    node = start_http_node(tmp_path, "--requirepass", TOKEN)
    try:
        for path in ("/", "/dashboard", "/dashboard.js", "/dashboard.css"):
            assert node.request("GET", path).status == 200
        for path in ("/v1/dashboard", "/v1/events"):
            denied = node.request("GET", path)
            assert denied.status == 401 and denied.headers["www-authenticate"].startswith("Bearer")
            good = node.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert good.status == 200
    finally:
        node.server.stop()


def test_origin_health_and_the_breaker_in_the_timeline(tmp_path: Path) -> None:
    node = start_http_node(
        tmp_path,
        *("--origin", "tests.origin.loader_module:load"),
        *("--origin-breaker-failures", "2", "--origin-breaker-reset-s", "60"),
    )
    try:
        with node.redis() as client:
            assert client.get("abc") == b"cba"

            def failing_until_open() -> bool:
                # A failed load's outcome answers misses of its key for 100 ms, then the
                # next miss loads again: two failures open the breaker.
                with pytest.raises(redis.ResponseError, match="origin unavailable"):
                    client.get("boom")
                return origin_of(node)["breaker"] == "open"

            assert poll(failing_until_open), origin_of(node)
        data = node.request("GET", "/v1/dashboard").json()
        assert isinstance(data, dict)
        origin = data["regions"][0]["nodes"][0]["origin"]
        assert origin["breaker"] == "open" and origin["breaker_opened"] == 1, origin
        assert origin["loads"] >= 3 and origin["errors"] == 2
        assert "loader_module" in origin["origin"]
        (opened,) = [e for e in data["events"] if e["kind"] == "breaker_opened"]
        assert opened["subject"] == "origin" and "blew up" in opened["detail"]
    finally:
        node.server.stop()


def origin_of(node: HttpNode) -> dict[str, object]:
    data = node.request("GET", "/v1/dashboard").json()
    assert isinstance(data, dict)
    origin: dict[str, object] = data["regions"][0]["nodes"][0]["origin"]
    return origin
