"""TLS contexts built from the settings, for every link: clients to nodes, nodes to
nodes, HTTP. The standard library's `ssl` does the work; this module only decides.

A node keeps two live contexts: the server context (its RESP TLS port and HTTPS: its
certificate, and the CA that client certificates are verified against, as
`tls_auth_clients` says) and, with `tls_cluster`, the peer context it dials other nodes
with (it verifies their certificate against the CA, and by default their name against
the host of their advertised address, and presents its own: mutual TLS). `reload` loads
new certificate files into both in place: new handshakes use them, open connections
keep theirs.

Channel binding (`channel_binding`): what ties a proof made inside a connection (the
peers' HMAC) to that one TLS connection. Python 3.11 to 3.13 offer only "tls-unique"
(RFC 5929); RFC 9266 defines "tls-exporter" for TLS 1.3, but `ssl` has no keying
material exporter. Under TLS 1.3 OpenSSL's tls-unique is the first Finished message,
which both ends agree on, which differs on every connection (it covers both randoms and
the key exchange), and which travels encrypted: a relay that terminates TLS on each side
sees two different values. So it is what we bind, on 1.2 and 1.3 alike.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Protocol

from geocache.config import NodeConfig

PROTOCOLS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
# Redis's tls-auth-clients values, as the verify mode of the server context.
AUTH_CLIENTS = {"no": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "yes": ssl.CERT_REQUIRED}
# A TLS record starts with its content type; a handshake record (ClientHello) is 22.
HANDSHAKE_RECORD = 0x16


class HasExtraInfo(Protocol):
    """A transport: asyncio's, uvloop's, or a test's."""

    def get_extra_info(self, name: str, default: object = None) -> object: ...


def parse_protocols(text: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """(lowest, highest) version from Redis's `tls-protocols` ("TLSv1.2 TLSv1.3");
    empty: TLS 1.2 and 1.3 (older versions are broken and refused)."""
    names = text.replace(",", " ").split() or list(PROTOCOLS)
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown:
        raise ValueError(f"tls_protocols: {' '.join(unknown)} (use TLSv1.2 and/or TLSv1.3)")
    versions = sorted(PROTOCOLS[n] for n in names)
    return versions[0], versions[-1]


def _restrict(context: ssl.SSLContext, protocols: str, ciphers: str) -> ssl.SSLContext:
    context.minimum_version, context.maximum_version = parse_protocols(protocols)
    if ciphers:  # TLS 1.2 suites; ssl cannot choose TLS 1.3's (OpenSSL's defaults are sound)
        context.set_ciphers(ciphers)
    return context


def _load_ca(context: ssl.SSLContext, ca_file: str, ca_dir: str) -> None:
    if ca_file or ca_dir:
        context.load_verify_locations(cafile=ca_file or None, capath=ca_dir or None)


def server_context(config: NodeConfig) -> ssl.SSLContext:
    """The context of the node's TLS port and HTTPS.

    With `tls_cluster`, client certificates are asked for even under
    `tls_auth_clients no` (optional then): peers present theirs, and a certificate that
    is presented is verified against the CA whatever the setting.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _restrict(context, config.tls_protocols, config.tls_ciphers)
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    _load_ca(context, config.tls_ca_cert_file, config.tls_ca_cert_dir)
    mode = AUTH_CLIENTS[config.tls_auth_clients]
    if mode == ssl.CERT_NONE and config.tls_cluster:
        mode = ssl.CERT_OPTIONAL
    context.verify_mode = mode
    return context


def peer_context(config: NodeConfig) -> ssl.SSLContext:
    """The context a node dials its peers with (`tls_cluster`): mutual TLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _restrict(context, config.tls_protocols, config.tls_ciphers)
    context.check_hostname = config.tls_cluster_check_name
    context.verify_mode = ssl.CERT_REQUIRED
    _load_ca(context, config.tls_ca_cert_file, config.tls_ca_cert_dir)
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    return context


def client_context(
    ca_file: str | None = None,
    ca_dir: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A context for a client of the nodes: the system's trusted CAs unless `ca_file` or
    `ca_dir` is given; a client certificate when `cert_file` is (`key_file`: its key, if
    not in the same file). Certificates and names are always verified, unless
    `check_hostname` is False (then the name is not, the certificate still is)."""
    context = ssl.create_default_context(cafile=ca_file, capath=ca_dir)
    context.check_hostname = check_hostname
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def client_tls(
    use_tls: bool, context: ssl.SSLContext | None, seeds_tls: bool = False
) -> ssl.SSLContext | None:
    """What a client dials nodes with: `context` if given, else a verifying default
    context when `use_tls` or the seeds say rediss://, else None (plaintext)."""
    if context is not None:
        return context
    return client_context() if use_tls or seeds_tls else None


def host_of(addr: str) -> str:
    """The host of "host:port" (an IPv6 host without its brackets): the name a node's
    certificate must carry."""
    return addr.rpartition(":")[0].strip("[]")


def reload(contexts: list[ssl.SSLContext], config: NodeConfig) -> None:
    """Load the certificate, key and CA files again into live contexts.

    The files are tried in a throwaway context first: OpenSSL replaces a certificate
    before it checks the key, so a bad pair loaded straight into a live context would
    leave it half changed. Raises (ssl.SSLError, OSError) and changes nothing if the
    files do not load. A CA removed from the file stays trusted until a restart
    (OpenSSL adds to a context's trust store, it never removes)."""
    server_context(config)
    for context in contexts:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        _load_ca(context, config.tls_ca_cert_file, config.tls_ca_cert_dir)


def channel_binding(transport: HasExtraInfo | None) -> bytes:
    """The TLS channel binding of a connection ("tls-unique"); b"" when plaintext."""
    if transport is None:
        return b""
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return b""
    return ssl_object.get_channel_binding("tls-unique") or b""


def describe(exc: BaseException) -> str:
    """A handshake failure in a few words, for a log line (no traceback)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or str(exc)).lower().replace("_", " ")
    if isinstance(exc, TimeoutError):
        return "handshake timed out"
    return str(exc) or type(exc).__name__


class LogLimiter:
    """At most one log line per key every `interval_s`; the next says how many were
    dropped. A peer or scanner failing a handshake 1,000 times a second must not turn
    the log into the bottleneck, and one line still says what is going on."""

    __slots__ = ("_dropped", "_interval_s", "_last", "_logger")

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def warning(self, key: str, message: str, **fields: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return
        if len(self._last) > 1024:  # keys are bounded by reasons, not by attackers
            self._last.clear()
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            fields["same_since_last"] = dropped
        self._logger.warning(message, extra=fields)
