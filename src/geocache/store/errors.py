"""Errors the store raises. Their messages are Redis's, so the RESP layer passes them on."""

from __future__ import annotations


class StoreError(Exception):
    """A request the store refuses; nothing was changed."""


class NotAnInteger(StoreError):
    def __init__(self) -> None:
        super().__init__("ERR value is not an integer or out of range")


class NotAFloat(StoreError):
    def __init__(self) -> None:
        super().__init__("ERR value is not a valid float")


class Overflow(StoreError):
    def __init__(self) -> None:
        super().__init__("ERR increment or decrement would overflow")


class NanOrInfinity(StoreError):
    def __init__(self) -> None:
        super().__init__("ERR increment would produce NaN or Infinity")


class TooLarge(StoreError):
    """A key or value over the configured limit, or an entry bigger than max_bytes."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"ERR {what} of {size} bytes is larger than the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class VersionRefused(StoreError):
    """A received version out of range, or too far ahead of this node's clock to trust."""

    def __init__(self, version: int, ahead_ms: int, max_ahead_ms: int) -> None:
        if version < 0:
            reason = "is out of range"
        else:
            reason = f"is {ahead_ms} ms ahead of this node's clock (max {max_ahead_ms} ms)"
        super().__init__(f"ERR version {version} {reason}")
        self.version = version
        self.ahead_ms = ahead_ms
