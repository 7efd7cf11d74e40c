"""Django's own `RedisCache` and aiocache's `RedisCache`, unchanged, against a geocache
node and against one node of a 3-node region (any node answers any key).

Django's backend uses a transaction for `set_many`/`delete_many`; in a cluster those
work when the keys share a slot (`{tag}`), as on Redis Cluster, and answer CROSSSLOT
otherwise (Django has no cluster support of its own), which the test shows too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import running_region
from support.procs import ServerProcess, start_geocache

pytestmark = pytest.mark.timeout(300)

DJANGO_SCRIPT = r"""
import sys
import django
from django.conf import settings

settings.configure(CACHES={"default": {
    "BACKEND": "django.core.cache.backends.redis.RedisCache",
    "LOCATION": f"redis://127.0.0.1:{sys.argv[1]}",
}})
django.setup()
from django.core.cache import cache

assert cache.get("missing") is None
cache.set("greeting", "hello", 30)
assert cache.get("greeting") == "hello"
assert cache.add("greeting", "other") is False
assert cache.incr("counter", 1) if cache.add("counter", 1) else True
assert cache.incr("counter", 5) == 7
assert cache.touch("greeting", 60) is True
assert cache.has_key("greeting")
cache.delete("greeting")
assert cache.get("greeting") is None
cache.set_many({"{u1}a": 1, "{u1}b": {"nested": [1, 2]}})
assert cache.get_many(["{u1}a", "{u1}b"]) == {"{u1}a": 1, "{u1}b": {"nested": [1, 2]}}
cache.delete_many(["{u1}a", "{u1}b"])
assert cache.get_many(["{u1}a", "{u1}b"]) == {}
try:
    cache.set_many({"x1": 1, "y2": 2})
    cross = "ok"
except Exception as exc:
    cross = type(exc).__name__ + ": " + str(exc)
print(cross)
"""

AIOCACHE_SCRIPT = r"""
import asyncio
import sys
from aiocache import RedisCache

async def main():
    cache = RedisCache(endpoint="127.0.0.1", port=int(sys.argv[1]), namespace="aio")
    try:
        assert await cache.get("k") is None
        assert await cache.set("k", "v", ttl=30)
        assert await cache.get("k") == "v"
        assert await cache.add("fresh", 1)
        assert await cache.exists("fresh")
        assert await cache.increment("n", 2) == 2
        assert await cache.expire("k", 60)
        assert await cache.delete("k") == 1
        assert await cache.multi_set([("{t}a", "1"), ("{t}b", "2")])
        assert await cache.multi_get(["{t}a", "{t}b", "{t}c"]) == ["1", "2", None]
    finally:
        await cache.close()
    print("ok")

asyncio.run(main())
"""


def run(script: str, port: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, str(port)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_geocache(tmp_path_factory.mktemp("single"), ["--log-level", "warning"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with running_region(Path(tmp_path_factory.mktemp("region"))) as nodes:
        yield nodes


def test_djangos_redis_cache_on_one_node(node: ServerProcess) -> None:
    assert run(DJANGO_SCRIPT, node.port) == "ok"


def test_djangos_redis_cache_on_a_region_node(region: list[ServerProcess]) -> None:
    # Keys of different slots in one transaction: as on Redis Cluster.
    assert "slot" in run(DJANGO_SCRIPT, region[1].port)


def test_aiocache_redis_backend_on_one_node(node: ServerProcess) -> None:
    assert run(AIOCACHE_SCRIPT, node.port) == "ok"


def test_aiocache_redis_backend_on_a_region_node(region: list[ServerProcess]) -> None:
    assert run(AIOCACHE_SCRIPT, region[2].port) == "ok"
