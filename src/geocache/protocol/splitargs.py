"""Split an inline command line into arguments exactly as Redis's `sdssplitargs` does.

Arguments are separated by blanks. A double-quoted argument understands `\\xHH`, `\\n`,
`\\r`, `\\t`, `\\b`, `\\a` and `\\<any>` (that character); a single-quoted one only `\\'`.
A closing quote must be followed by a blank or the end of the line, and a quote may open
in the middle of an argument (`foo"bar"` is `foobar`). The C code stops at a NUL byte,
so everything after a NUL is ignored here too.

Two details that a plain `bytes.split()` gets wrong, hence the careful path: an unquoted
argument ends only at space, tab, CR, LF (not at vertical tab or form feed), while the
blanks skipped between arguments are all six of C's `isspace`.
"""

from __future__ import annotations

# C isspace() in the C locale; bytes >= 0x80 are never blanks (signed char, glibc table).
_BLANKS = frozenset(b" \t\n\x0b\x0c\r")
_ENDS_UNQUOTED = frozenset(b" \t\n\r")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}
_BACKSLASH, _DQUOTE, _SQUOTE, _X = 0x5C, 0x22, 0x27, 0x78


def split_args(line: bytes) -> list[bytes] | None:
    """The arguments of `line`, or None for unbalanced quotes (Redis's error case)."""
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    if b'"' not in line and b"'" not in line and b"\x0b" not in line and b"\x0c" not in line:
        return line.split()  # same result, in C: the common case
    args: list[bytes] = []
    i, end = 0, len(line)
    while True:
        while i < end and line[i] in _BLANKS:
            i += 1
        if i == end:
            return args
        arg = bytearray()
        i = _read_arg(line, i, arg)
        if i < 0:
            return None
        args.append(bytes(arg))


def _read_arg(line: bytes, i: int, arg: bytearray) -> int:
    """Append one argument starting at `i` to `arg`; return where to go on, -1 on error."""
    end = len(line)
    quote = 0  # the open quote character, 0 when outside quotes
    while True:
        c = line[i] if i < end else 0
        nxt = line[i + 1] if i + 1 < end else 0
        if quote == _DQUOTE and c == _BACKSLASH and nxt == _X and _is_hex_pair(line, i + 2):
            arg.append(int(line[i + 2 : i + 4], 16))
            i += 3
        elif quote == _DQUOTE and c == _BACKSLASH and nxt:
            i += 1
            arg.append(_ESCAPES.get(nxt, nxt))
        elif quote == _SQUOTE and c == _BACKSLASH and nxt == _SQUOTE:
            i += 1
            arg.append(_SQUOTE)
        elif quote and c == quote:
            # A closing quote must be followed by a blank or the end of the line.
            return -1 if nxt and nxt not in _BLANKS else i + 1
        elif quote and not c:
            return -1  # unterminated quotes
        elif quote:
            arg.append(c)
        elif c in _ENDS_UNQUOTED or not c:
            return i + 1 if c else i
        elif c in (_DQUOTE, _SQUOTE):
            quote = c
        else:
            arg.append(c)
        i += 1


def _is_hex_pair(line: bytes, i: int) -> bool:
    return i + 1 < len(line) and line[i] in _HEX and line[i + 1] in _HEX
