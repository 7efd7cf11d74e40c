"""Redis's glob patterns (KEYS, SCAN MATCH), compiled once to a regular expression.

Supported as in Redis's stringmatchlen: `*` any run, `?` one byte, `[abc]`, `[^abc]`,
`[a-z]` (ends in either order), and `\\x` for a literal x. Matching is on bytes.

Matching takes O(len(key) * len(pattern)) time, never exponential: a `.*` per star
would backtrack through every split of the key (`*a*a*a*a*a*b` against 200 bytes of
`a` took minutes; Redis had the same flaw, CVE-2022-36021). The segments between stars
each match a fixed number of bytes, so matching each middle segment at its leftmost
place never loses a match: an atomic group `(?>.*?segment)` takes that place and is
never retried, and only the last segment, anchored at the end, is searched for.
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
    segments: list[list[bytes]] = [[]]  # the pattern cut at its stars
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        i += 1
        if c == b"*":
            segments.append([])
        elif c == b"?":
            segments[-1].append(b".")
        elif c == b"\\" and i < n:
            segments[-1].append(re.escape(pattern[i : i + 1]))
            i += 1
        elif c == b"[":
            i = _translate_class(pattern, i, segments[-1])
        else:
            segments[-1].append(re.escape(c))
    first, *middle = (b"".join(segment) for segment in segments)
    if not middle:
        return first
    *middle, last = middle
    return first + b"".join(b"(?>.*?" + m + b")" for m in middle if m) + b".*" + last


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
