"""geocache: a geo-distributed, highly available in-memory cache that speaks Redis."""

from geocache.client.aio import AsyncClient
from geocache.client.errors import CacheError, CommandError, DecodeError, Timeout, Unavailable
from geocache.client.sync import Client
from geocache.clock import HLC, ManualClock, SystemClock
from geocache.store.local import LocalCache

__version__ = "0.1.0"

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
