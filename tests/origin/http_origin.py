"""An HTTP origin for tests: aiohttp on 127.0.0.1, in a thread of the test process.

`GET /items/{key}` answers the value held for the key (its content type kept), 404 when
there is none. A test changes `values`, slows every answer (`delay_s`), or makes every
answer an error (`fail_status`), and reads how often each key was asked for
(`requests`) and the paths as they came over the wire (`raw_paths`). Attributes are
plain values set from the test's thread and read by the origin's: each is one
assignment, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from types import TracebackType

from aiohttp import web

HOST = "127.0.0.1"
# Budget for the origin's thread to start or stop (seconds).
THREAD_TIMEOUT_S = 10.0


class HttpOrigin:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.delay_s = 0.0
        self.fail_status: int | None = None
        self.requests: Counter[str] = Counter()
        # Every request's path as it came over the wire (still percent-encoded).
        self.raw_paths: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="http-origin", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/items/{{key}}"

    def total_requests(self) -> int:
        return sum(self.requests.values())

    def __enter__(self) -> HttpOrigin:
        self._thread.start()
        if not self._ready.wait(THREAD_TIMEOUT_S):
            raise RuntimeError("the test origin did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(THREAD_TIMEOUT_S)
        self._thread.join(THREAD_TIMEOUT_S)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/items/{key}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._loop.call_soon(self._loop.stop)

    async def _get(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        self.requests[key] += 1
        self.raw_paths.append(request.raw_path)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="origin failing")
        value = self.values.get(key)
        if value is None:
            return web.Response(status=404, text="no such item")
        media = self.content_types.get(key, "application/octet-stream")
        content_type, _, params = media.partition(";")
        charset = params.partition("charset=")[2].strip() or None
        return web.Response(body=value, content_type=content_type.strip(), charset=charset)
