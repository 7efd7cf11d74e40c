"""Test support: real server processes, a raw RESP client and node flag mapping."""

from __future__ import annotations

from .nodes import NodeFactory, UnsupportedOnRedis, start_node
from .procs import (
    HOST,
    ServerProcess,
    free_port,
    require_tool,
    start_geocache,
    start_redis,
    target,
    wait_ready,
)
from .resp import RawClient, Reply, decode, encode_command, reply_end, split_replies

__all__ = [
    "HOST",
    "NodeFactory",
    "RawClient",
    "Reply",
    "ServerProcess",
    "UnsupportedOnRedis",
    "decode",
    "encode_command",
    "free_port",
    "reply_end",
    "require_tool",
    "split_replies",
    "start_geocache",
    "start_node",
    "start_redis",
    "target",
    "wait_ready",
]
