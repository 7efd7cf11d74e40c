"""Structured logs: one line per event, with the node id and region on every line.

Plain text by default (`time level event key=value ...`), or one JSON object per line
with `log_json`. Extra fields come from `logging`'s `extra=`.

Values keep their structure: a dict, list, tuple, set or dataclass goes into a JSON
line as nested JSON (and into a text line as compact JSON), never as its Python repr;
bytes (keys) become text, undecodable bytes escaped as `\\xNN`; anything else becomes
its `str()`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
_SCALARS = (str, int, float, bool, type(None))


def plain(value: Any) -> Any:
    """`value` as JSON-ready data: containers recursively, dataclasses as dicts."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=str)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


class _Formatter(logging.Formatter):
    def __init__(self, node_id: str, region: str, as_json: bool) -> None:
        super().__init__()
        self._base = {"node": node_id, "region": region}
        self._json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(self._base)
        fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        stamp += f".{int(record.msecs):03d}Z"
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        if self._json:
            line = {"ts": stamp, "level": record.levelname.lower(), "event": record.getMessage()}
            return json.dumps(plain({**line, **fields}))
        pairs = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        return f"{stamp} {record.levelname.lower():7} {record.getMessage()} {pairs}"


def _quote(value: object) -> str:
    data = plain(value)
    if isinstance(data, dict | list):
        return json.dumps(data, separators=(",", ":"))
    text = str(data)
    return json.dumps(text) if (" " in text or "=" in text or not text) else text


def setup(node_id: str, region: str, level: str = "info", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(node_id, region, as_json))
    root = logging.getLogger("geocache")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
