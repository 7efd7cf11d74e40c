"""What `--origin` names, parsed without I/O (config validation uses it too).

Three kinds, told apart by their form:

- `redis://[[user]:password@]host:port[/db]`: `GET key` on that Redis (database `db`,
  0 by default).
- `http://host/path/{key}` or `https://...`: a `GET` of the URL with `{key}` replaced
  by the key, percent-encoded.
- `package.module:function`: awaiting `function(key)`, an async callable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

KEY_FIELD = "{key}"
_ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclass(frozen=True, slots=True)
class OriginSpec:
    kind: str  # "redis", "http" or "python"
    text: str  # as given (the URL template, or module:function)
    host: str = ""
    port: int = 0
    db: int = 0
    username: str = ""
    password: str = ""

    @property
    def shown(self) -> str:
        """The origin as logs and INFO may show it: without a password."""
        if self.kind == "redis":
            return f"redis://{self.host}:{self.port}/{self.db}"
        return self.text


def parse_origin(text: str) -> OriginSpec:
    """The origin named by `text`; ValueError saying what is wrong otherwise."""
    text = text.strip()
    if text.startswith("redis://"):
        return _redis(text)
    if text.startswith(("http://", "https://")):
        if KEY_FIELD not in text:
            raise ValueError(f"an http origin needs {KEY_FIELD} where the key goes: {text!r}")
        if not urlsplit(text.replace(KEY_FIELD, "k")).hostname:
            raise ValueError(f"an http origin needs a host: {text!r}")
        return OriginSpec("http", text)
    if _ENTRY_POINT.fullmatch(text):
        return OriginSpec("python", text)
    raise ValueError(
        f"origin must be redis://host:port/db, http(s)://host/path/{KEY_FIELD} or"
        f" module:function, not {text!r}"
    )


def _redis(text: str) -> OriginSpec:
    parts = urlsplit(text)
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"bad port in origin {text!r}") from None
    path = parts.path.strip("/") or "0"
    if not parts.hostname or not path.isdigit() or parts.query:
        raise ValueError(
            f"a redis origin is redis://[[user]:password@]host:port[/db], not {text!r}"
        )
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    return OriginSpec("redis", text, parts.hostname, port, int(path), user, password)
