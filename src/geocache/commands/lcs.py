"""LCS: the longest common subsequence of two strings (Redis 7.0's lcsCommand).

Redis fills an (n+1) x (m+1) table of LCS lengths and walks it back from the end,
stepping up when LCS(i-1, j) > LCS(i, j-1) and left otherwise; which subsequence (and
which match ranges) it reports depends on that walk, so the walk is Redis's, step for
step. The table is kept as bit vectors instead (Hyyrö's bit-parallel LCS): row i is an
int V_i over B's positions, and LCS(i, j) = j - popcount(V_i & (2^j - 1)). That fills it
in n big-int operations rather than n * m Python steps, in n * m / 8 bytes.

Limits as Redis: the table Redis would allocate (4 bytes a cell) may not pass
proto-max-bulk-len (`max_value_bytes`).
"""

from __future__ import annotations

from geocache.commands.context import Session
from geocache.commands.strings import NOT_INTEGER, SYNTAX_ERROR
from geocache.commands.table import command
from geocache.protocol.types import Error
from geocache.store.counters import parse_int
from geocache.store.errors import StoreError

_BOTH = Error("ERR If you want both the length and indexes, please just use IDX.")
_TOO_BIG = Error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
# Redis's table cell: a uint32_t.
CELL_BYTES = 4


def _rows(a: bytes, b: bytes) -> list[int]:
    """V_0..V_n: bit j of V_i is 0 where LCS(i, j+1) > LCS(i, j)."""
    full = (1 << len(b)) - 1
    matches: dict[int, int] = {}
    for j, char in enumerate(b):
        matches[char] = matches.get(char, 0) | (1 << j)
    rows = [full]
    v = full
    for char in a:
        u = v & matches.get(char, 0)
        v = ((v + u) | (v - u)) & full
        rows.append(v)
    return rows


class _Table:
    """LCS(i, j) from the bit rows."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[int]) -> None:
        self.rows = rows

    def __call__(self, i: int, j: int) -> int:
        return j - (self.rows[i] & ((1 << j) - 1)).bit_count()


def _options(argv: list[bytes]) -> tuple[bool, bool, bool, int] | Error:
    getlen = getidx = withmatchlen = False
    minmatchlen = 0
    j = 3
    while j < len(argv):
        option = argv[j].upper()
        if option == b"IDX":
            getidx = True
        elif option == b"LEN":
            getlen = True
        elif option == b"WITHMATCHLEN":
            withmatchlen = True
        elif option == b"MINMATCHLEN" and j + 1 < len(argv):
            try:
                minmatchlen = max(parse_int(argv[j + 1]), 0)
            except StoreError:
                return NOT_INTEGER
            j += 1
        else:
            return SYNTAX_ERROR
        j += 1
    if getidx and getlen:
        return _BOTH
    return getlen, getidx, withmatchlen, minmatchlen


@command("lcs", -3, "readonly", keys=(1, 2, 1), summary="Longest common subsequence")
def cmd_lcs(session: Session, argv: list[bytes]) -> object:
    store = session.store
    entries = store.lookup(argv[1]), store.lookup(argv[2])
    a, b = (e[0] if e is not None else b"" for e in entries)
    parsed = _options(argv)
    if isinstance(parsed, Error):
        return parsed
    getlen, getidx, withmatchlen, minmatchlen = parsed
    if (len(a) + 1) * (len(b) + 1) * CELL_BYTES > session.node.config.max_value_bytes:
        return _TOO_BIG
    lcs = _Table(_rows(a, b))
    length = lcs(len(a), len(b))
    if getlen:
        return length
    result, matches = _walk(a, b, lcs, length, minmatchlen, withmatchlen)
    if not getidx:
        return result
    return {b"matches": matches, b"len": length}


def _walk(
    a: bytes, b: bytes, lcs: _Table, length: int, minmatchlen: int, withmatchlen: bool
) -> tuple[bytes, list[object]]:
    """Redis's walk back through the table: the subsequence and the match ranges."""
    result = bytearray(length)
    matches: list[object] = []
    idx, i, j = length, len(a), len(b)
    alen = len(a)
    arange_start = alen  # no range open
    arange_end = brange_start = brange_end = 0
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result[idx - 1] = a[i - 1]
            if arange_start == alen:
                arange_start = arange_end = i - 1
                brange_start = brange_end = j - 1
            elif arange_start == i and brange_start == j:
                arange_start -= 1
                brange_start -= 1
            else:
                emit = True
            if arange_start == 0 or brange_start == 0:
                emit = True
            idx, i, j = idx - 1, i - 1, j - 1
        else:
            if lcs(i - 1, j) > lcs(i, j - 1):
                i -= 1
            else:
                j -= 1
            if arange_start != alen:
                emit = True
        if emit:
            match_len = arange_end - arange_start + 1
            if minmatchlen == 0 or match_len >= minmatchlen:
                match: list[object] = [[arange_start, arange_end], [brange_start, brange_end]]
                if withmatchlen:
                    match.append(match_len)
                matches.append(match)
            arange_start = alen
    return bytes(result), matches
