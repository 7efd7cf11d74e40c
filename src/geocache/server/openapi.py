"""The OpenAPI 3.0 description of the HTTP API, served at /openapi.json.

Built from the node's config, so it states this node's real limits and whether a
bearer token is needed (a node without requirepass declares no security, and one with
it declares which operations stay open). tests/integration/test_http_openapi.py runs
schemathesis against it: every response a real node gives must match this document.
"""

from __future__ import annotations

from typing import Any

from geocache.config import NodeConfig

# The longest TTL `?ttl=` takes: 100 years of 365.25 days. Longer than any cache
# needs, and it keeps the absolute expiry in ms far inside int64 (as SET EX does).
MAX_TTL_S = 3_155_760_000
# Operations anyone may call when requirepass is set: probes and this document.
# The dashboard's page, script and style hold no data: its JSON needs the token.
OPEN_OPERATIONS = frozenset(
    {
        "healthz",
        "readyz",
        "openapi",
        "dashboard_root",
        "dashboard_page",
        "dashboard_script",
        "dashboard_style",
    }
)

Schema = dict[str, Any]

_INT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}


def _object(properties: dict[str, Schema]) -> Schema:
    return {
        "type": "object",
        "required": sorted(properties),
        "properties": properties,
    }


SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": _STR}),
    "Health": _object({"status": {"type": "string", "enum": ["ok"]}, "node_id": _STR}),
    "Ready": {
        **_object({"status": {"type": "string", "enum": ["ready", "not ready"]}, "node_id": _STR}),
        # Not ready: why (warming up, or no seed accepted this node's proof of the secret);
        # ready but alone although given seeds (allow_solo): a warning saying so.
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "node_id": _STR,
            "reason": _STR,
            "warning": _STR,
        },
    },
    "Stats": _object(
        {
            "node_id": _STR,
            "region": _STR,
            "version": _STR,
            # Whether the hot path runs mypyc-compiled (INFO server's compiled:yes|no).
            "compiled": {"type": "boolean"},
            **{
                name: _INT
                for name in (
                    "uptime_s",
                    "keys",
                    "used_bytes",
                    "max_bytes",
                    "max_keys",
                    "hits",
                    "misses",
                    "evictions",
                    "expirations",
                    "tombstones",
                    "connected_clients",
                    "connections_received",
                    "commands_processed",
                    "http_requests",
                )
            },
        }
    ),
    "ClusterNode": {
        **_object(
            {
                "node_id": _STR,
                "region": _STR,
                "address": _STR,
                "resp_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "state": {"type": "string", "enum": ["up", "suspect", "down", "left"]},
                "self": {"type": "boolean"},
            }
        ),
        # Known for this node only: membership does not carry peers' HTTP ports.
        "properties": {
            "node_id": _STR,
            "region": _STR,
            "address": _STR,
            "resp_port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "http_port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "incarnation": {"type": "integer", "minimum": 0},
            "state": {"type": "string", "enum": ["up", "suspect", "down", "left"]},
            "self": {"type": "boolean"},
        },
    },
    "RegionStream": _object(
        {
            "rtt_ms": {"type": "number", "description": "-1 until measured"},
            **{
                name: _INT
                for name in (
                    "lag_ms",
                    "lag_p50_ms",
                    "lag_p99_ms",
                    "queued",
                    "resync",
                    "sent",
                    "acked",
                    "coalesced",
                    "failures",
                    "resyncs",
                    "bytes",
                )
            },
        }
    ),
    "Event": _object(
        {
            "seq": {"type": "integer", "minimum": 1},
            "at_ms": _INT,
            "kind": _STR,
            "subject": _STR,
            "region": _STR,
            "detail": _STR,
            "reporter": _STR,
        }
    ),
    "Events": _object(
        {
            "node_id": _STR,
            "started_ms": _INT,
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "last_seq": _INT,
        }
    ),
    "Dashboard": _object(
        {
            "node_id": _STR,
            "region": _STR,
            "at_ms": _INT,
            "started_ms": _INT,
            "clustered": {"type": "boolean"},
            "regions": {
                "type": "array",
                "description": "Each region's members as this node sees them, with their"
                " keys, memory, ops/s and hit ratio (the last known numbers, `stale`, for"
                " a member that did not answer)",
                "items": _object(
                    {"name": _STR, "nodes": {"type": "array", "items": {"type": "object"}}}
                ),
            },
            "lag": {
                "type": "array",
                "description": "Replication lag from each region to each other (ms)",
                "items": _object({"from": _STR, "to": _STR}),
            },
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "last_seq": _INT,
        }
    ),
    "Cluster": _object(
        {
            "node_id": _STR,
            "region": _STR,
            "nodes": {"type": "array", "items": {"$ref": "#/components/schemas/ClusterNode"}},
            "regions": {
                "type": "object",
                "description": "This node's stream to each other region: RTT and replication lag",
                "additionalProperties": {"$ref": "#/components/schemas/RegionStream"},
            },
        }
    ),
}


def _json(schema: str, description: str) -> Schema:
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"description": description, "content": content}


def _error(description: str) -> Schema:
    return _json("Error", description)


_ETAG = {
    "description": "The entry's version (a 64-bit hybrid logical clock value), quoted",
    "required": True,
    "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
}
_TTL = {
    "description": "Milliseconds the key has left; absent when it never expires",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_VALUE = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _key_operations(config: NodeConfig) -> dict[str, Schema]:
    key_errors = {
        "400": _error("The key has a % not followed by two hex digits (or a bad ttl on PUT)"),
        "414": _error(f"The key is longer than max_key_bytes ({config.max_key_bytes})"),
    }
    if_none_match = {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "description": "Answer 304 when the entry's ETag is among these",
        "schema": {"type": "string"},
    }
    found = {"ETag": _ETAG, "X-Geocache-Ttl-Ms": _TTL}
    conditions = [
        {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "description": "Only if the key's ETag is among these (* : only if it exists)",
            "schema": {"type": "string"},
        },
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "Only if the key's ETag is none of these (* : only if it is absent)",
            "schema": {"type": "string"},
        },
    ]
    failed = _error("A precondition (If-Match, If-None-Match) does not hold")
    return {
        "get": {
            "operationId": "get_key",
            "summary": "Read a key's value (raw bytes)",
            "parameters": [if_none_match],
            "responses": {
                "200": {"description": "The value", "headers": found, "content": _VALUE},
                "304": {"description": "Unchanged since the given ETag", "headers": found},
                "404": _error("No such key"),
                **key_errors,
            },
        },
        "head": {
            "operationId": "head_key",
            "summary": "A key's headers (ETag, TTL, length) without its value",
            "parameters": [if_none_match],
            "responses": {
                "200": {"description": "The key exists", "headers": found},
                "304": {"description": "Unchanged since the given ETag", "headers": found},
                "404": {"description": "No such key"},
                "414": {"description": "The key is longer than max_key_bytes"},
            },
        },
        "put": {
            "operationId": "put_key",
            "summary": "Write a key's value (the raw body), optionally with a TTL",
            "parameters": [
                {
                    "name": "ttl",
                    "in": "query",
                    "required": False,
                    "description": "Seconds until the key expires (as SET EX); default:"
                    " the node's default_ttl_s, or never",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TTL_S},
                },
                *conditions,
            ],
            "requestBody": {"required": False, "content": _VALUE},
            "responses": {
                "201": {"description": "Created", "headers": {"ETag": _ETAG}},
                "204": {"description": "Replaced", "headers": {"ETag": _ETAG}},
                "412": failed,
                "413": _error(
                    f"The value is over max_value_bytes ({config.max_value_bytes})"
                    " or the entry over max_bytes"
                ),
                **key_errors,
            },
        },
        "delete": {
            "operationId": "delete_key",
            "summary": "Delete a key",
            "parameters": conditions,
            "responses": {
                "204": {"description": "Deleted"},
                "404": _error("No such key"),
                "412": failed,
                **key_errors,
            },
        },
    }


def _get(operation_id: str, summary: str, responses: dict[str, Schema]) -> Schema:
    return {"get": {"operationId": operation_id, "summary": summary, "responses": responses}}


def _since_param(item: Schema) -> Schema:
    item["get"]["parameters"] = [
        {
            "name": "since",
            "in": "query",
            "required": False,
            "description": "Only events after this sequence number (the last one seen)",
            "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
        }
    ]
    return item


def _page(operation_id: str, summary: str, media: str) -> Schema:
    content = {media: {"schema": _STR}}
    return _get(operation_id, summary, {"200": {"description": summary, "content": content}})


def _paths(config: NodeConfig) -> dict[str, Schema]:
    key_param = {
        "name": "key",
        "in": "path",
        "required": True,
        "description": "The key's bytes, percent-encoded (%2F for a slash inside the key);"
        f" at most max_key_bytes ({config.max_key_bytes}) bytes once decoded, else 414",
        "schema": {"type": "string", "minLength": 1},
    }
    return {
        "/v1/keys/{key}": {"parameters": [key_param], **_key_operations(config)},
        "/v1/stats": _get("get_stats", "Counters of this node", {"200": _json("Stats", "Stats")}),
        "/v1/cluster": _get(
            "get_cluster", "The nodes this node knows", {"200": _json("Cluster", "Membership")}
        ),
        "/healthz": _get(
            "healthz", "Liveness: the process serves", {"200": _json("Health", "Alive")}
        ),
        "/readyz": _get(
            "readyz",
            "Readiness: listening, warmed up and, with seeds, trusted by one"
            " (503 with the reason otherwise)",
            {"200": _json("Ready", "Ready"), "503": _json("Ready", "Not ready yet, or stopping")},
        ),
        "/metrics": _get(
            "metrics",
            "Prometheus text exposition",
            {"200": {"description": "Metrics", "content": {"text/plain": {"schema": _STR}}}},
        ),
        "/v1/dashboard": _since_param(
            _get(
                "get_dashboard",
                "The cluster through this node: members, their numbers, lag, events",
                {"200": _json("Dashboard", "The dashboard's data"), "400": _error("Bad since")},
            )
        ),
        "/v1/events": _since_param(
            _get(
                "get_events",
                "This node's recent events (membership, resyncs, origin breaker)",
                {"200": _json("Events", "Events after since"), "400": _error("Bad since")},
            )
        ),
        "/": _page("dashboard_root", "The live dashboard (an HTML page)", "text/html"),
        "/dashboard": _page("dashboard_page", "The live dashboard (an HTML page)", "text/html"),
        "/dashboard.js": _page("dashboard_script", "The dashboard's script", "text/javascript"),
        "/dashboard.css": _page("dashboard_style", "The dashboard's style", "text/css"),
        "/openapi.json": _get(
            "openapi",
            "This document",
            {
                "200": {
                    "description": "OpenAPI 3.0",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        ),
    }


def _secure(document: Schema, open_operations: frozenset[str]) -> None:
    """Require the bearer token everywhere but the open operations, and say 401 can come."""
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "The node's requirepass"}
    }
    document["security"] = [{"bearer": []}]
    for item in document["paths"].values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if operation["operationId"] in open_operations:
                operation["security"] = []
            elif method == "head":
                operation["responses"]["401"] = {"description": "Missing or wrong token"}
            else:
                operation["responses"]["401"] = _error("Missing or wrong bearer token")


def openapi_document(config: NodeConfig, version: str) -> Schema:
    document: Schema = {
        "openapi": "3.0.3",
        "info": {
            "title": "geocache HTTP API",
            "version": version,
            "description": "Keys are any bytes; values are raw bodies. Errors are JSON"
            ' `{"error": "..."}`. A key written here is the same key over RESP.',
        },
        "paths": _paths(config),
        "components": {"schemas": SCHEMAS},
    }
    if config.requirepass:
        _secure(document, OPEN_OPERATIONS)
    return document
