"""Conditional requests (RFC 9110 section 13): `If-Match` and `If-None-Match` on a key.

An entry's ETag is its version, quoted (`"1234"`). Sans-IO: `Preconditions.parse` reads
the headers, `holds(etag)` says whether a write or delete may go ahead given the key's
current ETag (None when the key is absent); the handler answers 412 when it does not.

- `If-Match: "v1", "v2"`: only if the current ETag is one of them (strong comparison: a
  weak `W/"v"` never matches); `If-Match: *`: only if the key exists.
- `If-None-Match: "v1"`: only if the current ETag is none of them (weak comparison);
  `If-None-Match: *`: only if the key is absent (create, never overwrite).

Both headers may be given; both must hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ANY = "*"


def _tags(header: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in header.split(",") if t.strip())


@dataclass(frozen=True, slots=True)
class Preconditions:
    if_match: tuple[str, ...] | None = None  # None: no such header
    if_none_match: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> Preconditions:
        match, none_match = headers.get("If-Match"), headers.get("If-None-Match")
        return cls(
            None if match is None else _tags(match),
            None if none_match is None else _tags(none_match),
        )

    @property
    def given(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None

    def holds(self, etag: str | None) -> bool:
        """Whether a request with these headers may change a key whose ETag is `etag`."""
        if self.if_match is not None:
            if etag is None:
                return False
            if ANY not in self.if_match and etag not in self.if_match:
                return False
        if self.if_none_match is not None:
            if ANY in self.if_none_match:
                return etag is None
            weak = {t.removeprefix("W/") for t in self.if_none_match}
            if etag is not None and etag in weak:
                return False
        return True


def etag_of(version: int | None) -> str | None:
    return None if not version else f'"{version}"'
