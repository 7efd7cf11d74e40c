"""The node a cluster runs in, as the cluster and its parts see it: a seam, not the node."""

from __future__ import annotations

from typing import Protocol

from geocache.config import NodeConfig
from geocache.fill import Filler


class ClusterHost(Protocol):
    """The node a cluster runs in, as the cluster sees it."""

    @property
    def config(self) -> NodeConfig:
        """The settings of the moment (CONFIG SET replaces them)."""
        ...

    @property
    def origin(self) -> Filler | None:
        """The read-through origin, if one is configured."""
        ...
