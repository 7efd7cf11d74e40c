"""Where a hiredis.Reader stands in its input: the cursor that hiredis-py does not expose.

hiredis-py returns replies but no byte offsets. After `gets()` returns False nothing public
says where the incomplete item starts or whether the reader is inside an array (`len()`
still counts up to 1 KiB of consumed bytes), and a header such as `*2000000000` is
consumed and allocated for (a list of that many slots) before the caller can see it.
`RequestReader` needs both: to check a header's limit when it arrives, and to hand the
stream to the pure-Python parser at an exact item boundary.

So this module reads fields of hiredis's C `redisReader` struct through ctypes: `pos`,
`len`, `ridx` (the depth of the item in progress: 0 at top level) and the type of the
top-level item in progress; and it sets `maxelements`, which makes hiredis itself refuse
an array header over the limit before allocating anything. The layout is hiredis >= 1.0's
(bundled by hiredis-py >= 2) on 64-bit CPython. It is verified once, at import, against
what the public API shows for known inputs; if anything differs, `AVAILABLE` is False and
callers must not build a `Cursor` (RequestReader then runs on the pure-Python parser
alone: slower, same behaviour).
"""

from __future__ import annotations

import ctypes
import sys

import hiredis

# Byte offsets, 64-bit: the redisReader pointer follows PyObject_HEAD in hiredis-py's
# Reader object; then, in `struct redisReader`: int err; char errstr[128]; char *buf;
# size_t pos; size_t len; size_t maxbuf; long long maxelements; task **; int tasks;
# int ridx.
_READER_PTR = 16
_POS, _LEN, _MAXBUF, _MAXELEMENTS, _TASK, _RIDX = 144, 152, 160, 168, 176, 188
# `task` is an array of pointers to `struct redisReadTask`, whose first field is `int type`;
# the structs live as long as the reader (only the array is reallocated as it grows).
ARRAY = 2  # REDIS_REPLY_ARRAY; MAP is 9, SET 10, ATTR 11, PUSH 12
# hiredis's default maxelements (REDIS_READER_MAX_ARRAY_ELEMENTS): a layout witness.
_DEFAULT_MAXELEMENTS = (1 << 32) - 1


class Cursor:
    """Live views on one hiredis.Reader's state; it keeps the reader (and the struct) alive."""

    __slots__ = ("_len", "_max", "_pos", "_reader", "_ridx", "_root_type")

    def __init__(self, reader: hiredis.Reader, max_elements: int) -> None:
        base = _struct_address(reader)
        self._reader = reader
        self._pos = ctypes.c_size_t.from_address(base + _POS)
        self._len = ctypes.c_size_t.from_address(base + _LEN)
        self._ridx = ctypes.c_int.from_address(base + _RIDX)
        tasks = ctypes.c_void_p.from_address(base + _TASK).value
        root_task = ctypes.c_void_p.from_address(int(tasks or 0)).value if tasks else None
        if not root_task:
            raise RuntimeError("hiredis.Reader has no task stack")
        self._root_type = ctypes.c_int.from_address(int(root_task))
        self._max = ctypes.c_longlong.from_address(base + _MAXELEMENTS)
        self._max.value = max_elements

    def set_max_elements(self, max_elements: int) -> None:
        """Change the longest array hiredis accepts, from the next header it reads."""
        self._max.value = max_elements

    def unconsumed(self) -> int:
        """Bytes the reader holds but has not consumed (the item it is waiting on)."""
        return int(self._len.value - self._pos.value)

    def depth(self) -> int:
        """Nesting of the item in progress: -1 or 0 at top level, 1 inside an array, ..."""
        return int(self._ridx.value)

    def root_type(self) -> int:
        """The hiredis type of the top-level item in progress (ARRAY for a `*` frame)."""
        return int(self._root_type.value)


def _struct_address(reader: hiredis.Reader) -> int:
    address = ctypes.c_void_p.from_address(id(reader) + _READER_PTR).value
    if not address:
        raise RuntimeError("hiredis.Reader has no redisReader")
    return int(address)


def _layout_matches() -> bool:
    """Compare the struct as read here with what hiredis's public API reports."""
    reader = hiredis.Reader()
    base = _struct_address(reader)
    reader.setmaxbuf(123_457)
    if ctypes.c_size_t.from_address(base + _MAXBUF).value != reader.getmaxbuf():
        return False
    if ctypes.c_longlong.from_address(base + _MAXELEMENTS).value != _DEFAULT_MAXELEMENTS:
        return False
    cursor = Cursor(reader, 3)
    # (input, depth, unconsumed) after gets() returns False, worked out from hiredis's
    # read.c: the type byte of an incomplete item is consumed, a bulk header is not.
    steps = ((b"*2\r\n$1\r\na\r\n$3\r\nab", 1, 5), (b"c\r\n*1", 0, 1), (b"\r\n", 1, 0))
    for data, depth, unconsumed in steps:
        reader.feed(data)
        while reader.gets() is not False:
            pass
        seen = (cursor.depth(), cursor.unconsumed(), cursor._len.value)
        if seen != (depth, unconsumed, reader.len()):
            return False
    if cursor.root_type() != ARRAY:
        return False
    other = hiredis.Reader()
    other.feed(b"%2\r\n")
    if other.gets() is not False or Cursor(other, 3).root_type() != 9:  # REDIS_REPLY_MAP
        return False
    reader.feed(b"*4\r\n")  # over the maxelements just set: hiredis must refuse it
    try:
        reader.gets()
    except hiredis.ProtocolError:
        return True
    return False


def _probe() -> bool:
    if sys.implementation.name != "cpython" or sys.maxsize != 2**63 - 1:
        return False
    if object.__basicsize__ != _READER_PTR or hiredis.Reader.__basicsize__ < _READER_PTR + 8:
        return False  # debug (Py_TRACE_REFS) and free-threaded builds have larger headers
    try:
        return _layout_matches()
    except Exception:
        return False


AVAILABLE = _probe()
