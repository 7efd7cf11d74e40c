"""Structured logs: one line per event, with the node id and region on every line.

Plain text by default (`time level event key=value ...`), or one JSON object per line
with `log_json`. Extra fields come from `logging`'s `extra=`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class _Formatter(logging.Formatter):
    def __init__(self, node_id: str, region: str, as_json: bool) -> None:
        super().__init__()
        self._base = {"node": node_id, "region": region}
        self._json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(self._base)
        fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        stamp += f".{int(record.msecs):03d}Z"
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        if self._json:
            line = {"ts": stamp, "level": record.levelname.lower(), "event": record.getMessage()}
            return json.dumps({**line, **fields}, default=str)
        pairs = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        return f"{stamp} {record.levelname.lower():7} {record.getMessage()} {pairs}"


def _quote(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or "=" in text or not text) else text


def setup(node_id: str, region: str, level: str = "info", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(node_id, region, as_json))
    root = logging.getLogger("geocache")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
