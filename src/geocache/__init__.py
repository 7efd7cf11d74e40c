"""geocache: a geo-distributed, highly available in-memory cache that speaks Redis.

Importing it brings what `LocalCache` and the clients need (hiredis, xxhash), never the
node's own dependencies (aiohttp, prometheus_client, uvloop, rich: the `server` extra).

With `GEOCACHE_PURE=1` in the environment, every geocache module is imported from its
`.py` source even where a mypyc-compiled `.so` sits beside it (geocache/compiled.py):
one install runs both ways. This must happen before anything below imports a module.
"""

from geocache import compiled as _compiled

if _compiled.pure_requested():
    _compiled.use_sources()

from geocache._version import __version__
from geocache.client.aio import AsyncClient
from geocache.client.errors import CacheError, CommandError, DecodeError, Timeout, Unavailable
from geocache.client.sync import Client
from geocache.clock import HLC, ManualClock, SystemClock
from geocache.store.local import LocalCache

__all__ = [
    "HLC",
    "AsyncClient",
    "CacheError",
    "Client",
    "CommandError",
    "DecodeError",
    "LocalCache",
    "ManualClock",
    "SystemClock",
    "Timeout",
    "Unavailable",
    "__version__",
]
