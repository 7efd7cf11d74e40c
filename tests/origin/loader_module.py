"""A custom origin for the `module:function` test: `--origin tests.origin.loader_module:load`."""

from __future__ import annotations

import asyncio


async def load(key: bytes) -> bytes | str | None:
    """The key reversed; nothing for `missing`; a failure for `boom`."""
    await asyncio.sleep(0)
    if key == b"missing":
        return None
    if key == b"boom":
        raise RuntimeError("the loader blew up")
    if key.startswith(b"text:"):
        return key.decode()[5:] + " as text"
    return key[::-1]


def load_sync(key: bytes) -> bytes:
    """A plain function: the node runs it in a worker thread."""
    return b"sync:" + key
