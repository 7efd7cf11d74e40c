"""Redis's glob patterns (KEYS, SCAN MATCH), compiled once to a regular expression.

Supported as in Redis's stringmatchlen: `*` any run, `?` one byte, `[abc]`, `[^abc]`,
`[a-z]` (ends in either order), and `\\x` for a literal x. Matching is on bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

Matcher = Callable[[bytes], bool]


@lru_cache(maxsize=256)
def compile_glob(pattern: bytes) -> Matcher:
    """A function telling whether a key matches `pattern`."""
    if pattern == b"*":
        return lambda key: True
    regex = re.compile(_translate(pattern), re.DOTALL)
    return lambda key: regex.fullmatch(key) is not None


def _translate(pattern: bytes) -> bytes:
    out: list[bytes] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        i += 1
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i < n:
            out.append(re.escape(pattern[i : i + 1]))
            i += 1
        elif c == b"[":
            i = _translate_class(pattern, i, out)
        else:
            out.append(re.escape(c))
    return b"".join(out)


def _translate_class(pattern: bytes, i: int, out: list[bytes]) -> int:
    """Translate `[...]` starting after the `[`; returns the index after the `]`."""
    n = len(pattern)
    negate = i < n and pattern[i : i + 1] == b"^"
    if negate:
        i += 1
    items: list[bytes] = []
    while i < n and pattern[i : i + 1] != b"]":
        c = pattern[i : i + 1]
        if c == b"\\" and i + 1 < n:
            items.append(re.escape(pattern[i + 1 : i + 2]))
            i += 2
        elif i + 2 < n and pattern[i + 1 : i + 2] == b"-":
            # As Redis: a `-` with any byte after it makes a range, even `]`: `[a-]x]`
            # is the range `]`..`a` and the byte `x`.
            lo, hi = sorted((pattern[i], pattern[i + 2]))
            items.append(re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi])))
            i += 3
        else:
            items.append(re.escape(c))
            i += 1
    # Redis treats an unterminated class as running to the end of the pattern.
    i += 1
    body = b"".join(items)
    if not body:
        out.append(b"." if negate else b"(?!)")
    else:
        out.append(b"[" + (b"^" if negate else b"") + body + b"]")
    return i
