"""geocache: a geo-distributed, highly available in-memory cache that speaks Redis."""

from geocache.clock import HLC, ManualClock, SystemClock
from geocache.store.local import LocalCache

__version__ = "0.1.0"

__all__ = ["HLC", "LocalCache", "ManualClock", "SystemClock", "__version__"]
