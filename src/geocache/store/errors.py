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
