"""The HTTP API: keys, stats, cluster view, health, Prometheus metrics and OpenAPI.

An aiohttp application served from the node's own event loop. A lone node's handlers
read and write the store exactly as a RESP command does, with no lock and no await in
between; in cluster mode or in front of an origin, they run GET, SET, DEL, GETVER and
PTTL through the node's dispatch, as a RESP client would, so any node answers for any
key (forwarding to its owners) and a miss fills from the origin, whose Content-Type a
GET answers with when this node loaded the value. Either way a key PUT over HTTP is
read over RESP and the reverse, with the same versions and the same absolute expiry.

PUT and DELETE honour `If-Match` and `If-None-Match` against the ETag (the version),
answering 412 when they do not hold (conditional.py): compare-and-set over HTTP.

Keys are any bytes, percent-encoded in the path after `/v1/keys/`. The key is taken
from the raw (still encoded) path and decoded to bytes here: aiohttp's decoded path is
text, which cannot hold arbitrary bytes, and its normalised URL would resolve `..`.
A `%` not followed by two hex digits is a 400: decoding it leniently would give the key
`%zz` a second name (`%25zz`).

One middleware does what every request needs: the bearer-token check (when
requirepass is set), timing into the per-operation latency histograms, a count per
status code, and turning every error, aiohttp's own 404/405/413 included, into a JSON
`{"error": ...}` body. Limits (DESIGN.md section 10) are checked before work is done:
key length from the path, value length from Content-Length before the body is read.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from geocache._version import __version__
from geocache.commands.context import Deferred, Session
from geocache.compiled import compiled
from geocache.config import NodeConfig
from geocache.protocol.replies import ReplyReader
from geocache.protocol.types import Error, Raw
from geocache.server.conditional import Preconditions, etag_of
from geocache.server.dashboard import ASSETS, Dashboard
from geocache.server.openapi import MAX_TTL_S, OPEN_OPERATIONS, openapi_document
from geocache.server.prometheus import NodeCollector
from geocache.server.tls import HTTP_REFUSAL, TlsListener
from geocache.store.entry import Entry, latest_version
from geocache.store.errors import TooLarge

if TYPE_CHECKING:
    from geocache.server.node import Node

log = logging.getLogger("geocache.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KEY_PREFIX = "/v1/keys/"
# Anything after the prefix, slashes and newlines included (`.` would stop at %0A).
KEY_ROUTE = KEY_PREFIX + r"{key:[\s\S]+}"
# The request line holds the key percent-encoded (up to 3 bytes per key byte) plus the
# method, prefix and query: room for the largest key allowed on top of aiohttp's own
# default line limit (8190 bytes) for the rest.
REQUEST_LINE_SLACK_BYTES = 8190
# A graceful stop waits this long for requests in flight (as the RESP drain does).
SHUTDOWN_TIMEOUT_S = 5.0
OCTET_STREAM = "application/octet-stream"
TTL_HEADER = "X-Geocache-Ttl-Ms"
# A `%` that does not start a two-hex-digit escape.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


# Membership states (swim_messages.MemberState values) as the API names them.
_STATES = {"a": "up", "s": "suspect", "d": "down", "l": "left"}


class HttpServer:
    """The running HTTP listener; `close()` stops it (the node calls it on stop)."""

    def __init__(
        self,
        runner: web.AppRunner,
        port: int,
        api: HttpApi,
        listener: asyncio.Server | None = None,
        tls: TlsListener | None = None,
    ) -> None:
        self._runner = runner
        self._api = api
        self._listener = listener
        self.port = port
        self._tls = tls

    def connections(self) -> int:
        server = self._runner.server
        return len(server.connections) if server is not None else 0

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._tls is not None:
            self._tls.close()
        await self._runner.cleanup()
        await self._api.close()


_REFUSED_BODY = b'{"error": "max number of HTTP connections reached"}'
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)


class _Refused(asyncio.Protocol):
    """A connection past max_clients: a 503 and a close, before reading anything."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REFUSED)
        transport.close()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class HttpApi:
    """The handlers; each is named after its OpenAPI operationId."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._store = node.store
        self._registry = CollectorRegistry()
        self._registry.register(NodeCollector(node, self._connections))
        ProcessCollector(registry=self._registry)
        self._openapi: tuple[NodeConfig, bytes] | None = None
        self.server: web.Server | None = None  # set once the runner is set up
        # In cluster mode, or in front of an origin, key requests run as commands through
        # the node's dispatch (routing, forwarding, read-through), as this internal
        # client; a lone node reads and writes its store directly (no await between).
        self._session = Session(node, node.next_client_id(), "http", "http")
        self._session.authenticated = True
        self._dashboard = Dashboard(node)

    async def close(self) -> None:
        await self._dashboard.close()

    @property
    def _routed(self) -> bool:
        return self._node.cluster is not None or self._node.origin is not None

    def _connections(self) -> int:
        return len(self.server.connections) if self.server is not None else 0

    # -- keys ------------------------------------------------------------------------

    def _key(self, request: web.Request) -> bytes:
        raw = request.rel_url.raw_path[len(KEY_PREFIX) :]
        if _BAD_ESCAPE.search(raw):
            raise _Reply(error(400, "the key has a % not followed by two hex digits"))
        key = unquote_to_bytes(raw)
        limit = self._node.config.max_key_bytes
        if len(key) > limit:
            raise _Reply(error(414, f"key of {len(key)} bytes is longer than {limit} bytes"))
        return key

    async def get_key(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        if self._routed:
            return await self._get_routed(request, key)
        entry = self._store.lookup(key)
        if entry is None:
            return error(404, "no such key")
        etag = f'"{latest_version(entry)}"'
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=self._entry_headers(entry, etag))
        return web.Response(
            body=entry[0], content_type=OCTET_STREAM, headers=self._entry_headers(entry, etag)
        )

    async def _get_routed(self, request: web.Request, key: bytes) -> web.StreamResponse:
        """GET as a RESP client would: at an owner (forwarded), filled from the origin on
        a miss; then its version and TTL (ETag, TTL header) the same way."""
        version = await self._command(b"GETVER", key)
        if version is None:
            value = await self._command(b"GET", key)  # a miss may fill from the origin
            if value is None:
                return error(404, "no such key")
            version = await self._command(b"GETVER", key)
        etag = f'"{version}"'
        ttl_ms = await self._command(b"PTTL", key)
        headers = {"ETag": etag}
        if isinstance(ttl_ms, int) and ttl_ms >= 0:
            headers[TTL_HEADER] = str(ttl_ms)
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=headers)
        value = await self._command(b"GET", key)
        if not isinstance(value, bytes):
            return error(404, "no such key")
        origin = self._node.origin
        media = origin.content_type(key) if origin is not None else None
        content_type, _, params = (media or OCTET_STREAM).partition(";")
        charset = params.partition("charset=")[2].strip() or None
        return web.Response(
            body=value, content_type=content_type.strip(), charset=charset, headers=headers
        )

    async def _command(self, *argv: bytes) -> object:
        """Run a command through the node's dispatch (the cluster's router in cluster
        mode) as an internal client; errors become 503 (the cluster could not answer)."""
        node = self._node
        reply = node.dispatch(node.table, self._session, list(argv))
        if isinstance(reply, Deferred):
            reply = await reply.awaitable
        if isinstance(reply, Raw):  # pre-encoded by the owner that answered
            reader = ReplyReader()
            reader.feed(bytes(reply))
            reply = reader.gets()
        if isinstance(reply, Error):
            raise _Reply(error(503, str(reply)))
        return reply

    head_key = get_key  # aiohttp sends the headers of GET's response without its body

    def _entry_headers(self, entry: Entry, etag: str) -> dict[str, str]:
        headers = {"ETag": etag}
        if entry[1]:
            ttl_ms = max(entry[1] - self._node.clock.wall_ms(), 0)
            headers[TTL_HEADER] = str(ttl_ms)
        return headers

    async def put_key(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        ttl_s = self._ttl_s(request.query.getall("ttl", []))
        limit = self._node.config.max_value_bytes
        if request.content_length is not None and request.content_length > limit:
            return error(413, f"value of {request.content_length} bytes is over {limit} bytes")
        value = await self._body(request, limit)
        if len(value) > limit:
            return error(413, f"value of {len(value)} bytes is over {limit} bytes")
        conditions = Preconditions.parse(request.headers)
        if self._routed:
            return await self._put_routed(key, value, ttl_s, conditions)
        # No await from the check to the write: nothing else can change the key between.
        current = self._store.peek(key)
        if not conditions.holds(etag_of(current[2] if current else None)):
            return _precondition_failed(current[2] if current else None)
        try:
            entry = self._store.set(key, value, self._expires_at_ms(ttl_s))
        except TooLarge as exc:
            return error(413, str(exc).removeprefix("ERR "))
        status = 201 if current is None else 204
        return web.Response(status=status, headers={"ETag": f'"{entry[2]}"'})

    async def _put_routed(
        self, key: bytes, value: bytes, ttl_s: int, conditions: Preconditions
    ) -> web.StreamResponse:
        """SET at the key's primary; with a precondition, CAS on the version it was checked
        against, so a write that lands in between makes this one fail (412), not vanish."""
        version = await self._command(b"GETVER", key)
        current = version if isinstance(version, int) else None
        if conditions.given:
            if not conditions.holds(etag_of(current)):
                return _precondition_failed(current)
            argv = [b"CAS", key, b"%d" % (current or 0), value]
            argv += [b"EX", b"%d" % ttl_s] if ttl_s else []
            written = await self._command(*argv)
            if written is None:  # changed since GETVER
                return _precondition_failed(await self._command(b"GETVER", key))
        else:
            argv = [b"SET", key, value]
            if ttl_s:
                argv += [b"PXAT", b"%d" % self._expires_at_ms(ttl_s)]
            await self._command(*argv)
            written = await self._command(b"GETVER", key)
        status = 201 if current is None else 204
        return web.Response(status=status, headers={"ETag": f'"{written}"'})

    async def _body(self, request: web.Request, limit: int) -> bytes:
        """The body, within http_body_timeout_s and the client memory budget: the bytes
        its Content-Length announces count toward it while it is read (a chunked body,
        of unknown size, is bounded by max_value_bytes alone)."""
        node = self._node
        reserve = request.content_length or 0
        budget = node.budget
        if budget.limit and budget.used + reserve > budget.limit:
            node.refusals.count("client_memory", request.remote or "?")
            raise _Reply(error(503, "the node's client memory limit is reached; retry later"))
        budget.change(reserve)
        try:
            async with asyncio.timeout(node.config.http_body_timeout_s):
                return await request.read()  # client_max_size stops a longer chunked body
        except TimeoutError:
            node.refusals.count("http_timeout", request.remote or "?")
            raise _Reply(error(408, "the request body did not arrive in time")) from None
        finally:
            budget.change(-reserve)

    def _ttl_s(self, ttl: list[str]) -> int:
        """Seconds from `?ttl=` (as SET EX), or the default TTL, or 0 (none)."""
        if not ttl:
            return self._node.config.default_ttl_s
        text = ttl[0]
        if len(ttl) > 1 or not (text.isascii() and text.isdigit()):
            raise _Reply(error(400, "ttl must be one whole number of seconds"))
        ttl_s = int(text)
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise _Reply(error(400, f"ttl must be from 1 to {MAX_TTL_S} seconds"))
        return ttl_s

    def _expires_at_ms(self, ttl_s: int) -> int:
        return self._node.clock.wall_ms() + ttl_s * 1000 if ttl_s else 0

    async def delete_key(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        conditions = Preconditions.parse(request.headers)
        if self._routed:
            if conditions.given:
                # Checked just before the delete, not atomically with it (there is no
                # compare-and-delete command): a write in between is deleted too.
                version = await self._command(b"GETVER", key)
                current = version if isinstance(version, int) else None
                if not conditions.holds(etag_of(current)):
                    return _precondition_failed(current)
            deleted = await self._command(b"DEL", key)
        else:
            entry = self._store.peek(key)
            if conditions.given and not conditions.holds(etag_of(entry[2] if entry else None)):
                return _precondition_failed(entry[2] if entry else None)
            deleted = self._store.delete(key)
        if deleted:
            return web.Response(status=204)
        return error(404, "no such key")

    # -- the node --------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.StreamResponse:
        node = self._node
        store, stats = node.store, node.stats
        return web.json_response(
            {
                "node_id": node.node_id,
                "region": node.config.region,
                "version": __version__,
                "compiled": compiled(),
                "uptime_s": node.uptime_s(),
                "keys": len(store),
                "used_bytes": store.used_bytes,
                "max_bytes": store.max_bytes,
                "max_keys": store.max_keys,
                "hits": store.hits,
                "misses": store.misses,
                "evictions": store.evictions,
                "expirations": store.expirations,
                "tombstones": len(store.tombstones),
                "connected_clients": node.connection_count(),
                "connections_received": stats.connections_received,
                "commands_processed": stats.commands_processed,
                "http_requests": sum(node.metrics.http_statuses.values()),
            }
        )

    async def get_cluster(self, request: web.Request) -> web.StreamResponse:
        node = self._node
        me = {
            "node_id": node.node_id,
            "region": node.config.region,
            "address": node.config.bind,
            "resp_port": node.resp_port,
            "http_port": node.http_port,
            "state": "up",
            "self": True,
        }
        nodes = [me]
        if node.cluster is not None:
            for member in node.cluster.members():
                if member.node_id == node.node_id:
                    me["incarnation"] = member.incarnation
                    continue
                host, _, port = member.addr.rpartition(":")
                nodes.append(
                    {
                        "node_id": member.node_id,
                        "region": member.region,
                        "address": host,
                        "resp_port": int(port),
                        "incarnation": member.incarnation,
                        "state": _STATES[member.state.value],
                        "self": False,
                    }
                )
        regions = node.cluster.streams.status() if node.cluster is not None else {}
        return web.json_response(
            {
                "node_id": node.node_id,
                "region": node.config.region,
                "nodes": nodes,
                "regions": regions,
            }
        )

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok", "node_id": self._node.node_id})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        node = self._node
        reason = node.not_ready_reason()
        if not reason:
            body = {"status": "ready", "node_id": node.node_id}
            alone = node.serving_alone_reason()
            if alone:
                body["warning"] = f"serving alone (allow_solo): {alone}"
            return web.json_response(body)
        body = {"status": "not ready", "node_id": node.node_id, "reason": reason}
        return web.json_response(body, status=503)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    # -- the dashboard -----------------------------------------------------------------

    async def dashboard_page(self, request: web.Request) -> web.StreamResponse:
        return self._asset("dashboard.html")

    dashboard_root = dashboard_page  # `/` and `/dashboard` are the same page

    async def dashboard_script(self, request: web.Request) -> web.StreamResponse:
        return self._asset("dashboard.js")

    async def dashboard_style(self, request: web.Request) -> web.StreamResponse:
        return self._asset("dashboard.css")

    def _asset(self, name: str) -> web.Response:
        # Revalidated each time: a node upgraded in place serves its new page at once.
        headers = {"Cache-Control": "no-cache"}
        return web.Response(
            body=self._dashboard.asset(name), content_type=ASSETS[name], headers=headers
        )

    async def get_dashboard(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self._dashboard.state(_since(request)))

    async def get_events(self, request: web.Request) -> web.StreamResponse:
        events = self._node.events
        return web.json_response(
            {
                "node_id": self._node.node_id,
                "started_ms": self._node.started_ms,  # a reader sees a restart by it
                "events": [e.as_dict() for e in events.since(_since(request))],
                "last_seq": events.last_seq,
            }
        )

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        config = self._node.config
        cached = self._openapi
        if cached is None or cached[0] is not config:  # CONFIG SET makes a new config
            body = json.dumps(openapi_document(config, __version__)).encode()
            cached = self._openapi = (config, body)
        return web.Response(body=cached[1], content_type="application/json")


class _Reply(Exception):
    """Carries an error response out of argument checking."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


def _since(request: web.Request) -> int:
    """`?since=` (the last event sequence number seen), 0 when absent."""
    given = request.query.getall("since", [])
    if not given:
        return 0
    text = given[0]
    if len(given) > 1 or not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise _Reply(error(400, "since must be one whole number"))
    return int(text)


def _precondition_failed(version: object) -> web.Response:
    """412, with the key's current ETag when it exists."""
    if isinstance(version, int) and version:
        return error(412, f'precondition failed: the ETag is "{version}"', {"ETag": f'"{version}"'})
    return error(412, "precondition failed: no such key")


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = (t.strip().removeprefix("W/") for t in if_none_match.split(","))
    return any(t in (etag, "*") for t in tags)


# (method, path, operation): the route table; the operation names the handler, the
# latency histogram's `command` label and the OpenAPI operationId.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", KEY_ROUTE, "get_key"),
    ("HEAD", KEY_ROUTE, "head_key"),
    ("PUT", KEY_ROUTE, "put_key"),
    ("DELETE", KEY_ROUTE, "delete_key"),
    ("GET", "/v1/stats", "get_stats"),
    ("GET", "/v1/cluster", "get_cluster"),
    ("GET", "/healthz", "healthz"),
    ("GET", "/readyz", "readyz"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/openapi.json", "openapi"),
    ("GET", "/", "dashboard_root"),
    ("GET", "/dashboard", "dashboard_page"),
    ("GET", "/dashboard.js", "dashboard_script"),
    ("GET", "/dashboard.css", "dashboard_style"),
    ("GET", "/v1/dashboard", "get_dashboard"),
    ("GET", "/v1/events", "get_events"),
)


def _middleware(node: Node, operations: dict[object, str]) -> Middleware:
    metrics = node.metrics

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started_ns = perf_counter_ns()
        operation = operations.get(request.match_info.route, "unmatched")
        token = node.config.requirepass  # read each time: CONFIG SET may change it
        response: web.StreamResponse
        try:
            if token and operation not in PUBLIC and not _authorized(request, token):
                node.http_auth_failed(request.remote or "?")
                response = error(401, "missing or wrong bearer token", _CHALLENGE)
            else:
                response = await handler(request)
        except _Reply as reply:
            response = reply.response
        except web.HTTPException as exc:
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            response = error(exc.status, exc.reason, headers)
        except Exception:
            log.exception("http handler failed", extra={"operation": operation})
            response = error(500, "internal error")
        metrics.http.record(operation, perf_counter_ns() - started_ns)
        metrics.count_status(response.status)
        return response

    return observe


# Unmatched requests get their 404 or 405 without a token: that reveals nothing.
PUBLIC = OPEN_OPERATIONS | {"unmatched"}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="geocache"'}


def _authorized(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, f"Bearer {token}".encode())


class _ClientErrors(logging.Filter):
    """Log a malformed request from a client as one line, not an aiohttp traceback.

    aiohttp answers it 400 itself (before any handler runs) and logs the parser's
    exception with its traceback; that is the client's fault, not the node's.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args, record.exc_info = "bad http request", (), None
            record.client = client
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.reason = str(exc.message).splitlines()[0] if exc.message else exc.code
        return True


CLIENT_ERRORS = _ClientErrors()


def build_app(node: Node, api: HttpApi) -> web.Application:
    # Keyed by route, not handler: GET and HEAD share one handler.
    operations: dict[object, str] = {}
    app = web.Application(client_max_size=node.config.max_value_bytes)
    for method, path, operation in ROUTES:
        handler: Handler = getattr(api, operation)
        route = app.router.add_route(method, path, handler)
        operations[route] = operation
    app.middlewares.append(_middleware(node, operations))
    return app


async def start_http(node: Node) -> HttpServer:
    config = node.config
    max_line_size = 3 * config.max_key_bytes + REQUEST_LINE_SLACK_BYTES
    api = HttpApi(node)
    protocol_log = logging.getLogger("geocache.http.protocol")
    protocol_log.addFilter(CLIENT_ERRORS)  # once: the same filter object is not added twice
    runner = web.AppRunner(
        build_app(node, api),
        access_log=None,  # one log line per request would cost more than the request
        max_line_size=max_line_size,
        logger=protocol_log,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        # aiohttp closes a connection with no complete request this long after it opened
        # or after its last response: the header timeout (half-sent requests), which
        # also closes idle keep-alive connections.
        keepalive_timeout=config.http_header_timeout_s,
    )
    await runner.setup()
    server = runner.server
    assert server is not None
    api.server = server
    if config.https:
        # HTTPS: the node's TLS listener (server/tls.py) runs aiohttp's protocol once
        # the handshake is done, so a refused handshake is logged like the RESP port's.
        tls = node.tls_listener("https", server, HTTP_REFUSAL)
        return HttpServer(runner, tls.listen(config.bind, config.http_port), api, tls=tls)

    def accept() -> asyncio.BaseProtocol:
        # HTTP has its own door (limits.py): a crowd of HTTP connections, half-sent
        # requests included, cannot keep RESP clients out, nor the reverse.
        if len(server.connections) >= node.config.max_http_connections:
            node.stats.rejected_connections += 1
            node.refusals.count("max_http_connections", "http")
            return _Refused()
        return server()

    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        accept, config.bind, config.http_port, reuse_address=True, backlog=1024
    )
    port = listener.sockets[0].getsockname()[1]
    return HttpServer(runner, port, api, listener=listener)
