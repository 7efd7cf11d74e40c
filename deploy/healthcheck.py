"""The container's health probe: GET /healthz (or the path given) of the node in this
container, over HTTPS when the node serves it, and exit 0 on a 200.

    python3 /opt/geocache/healthcheck.py [/healthz | /readyz]

The image's HEALTHCHECK runs it, and so do the Kubernetes manifests' probes: the
kubelet's own HTTPS probes present no client certificate, which a node with
`tls_auth_clients yes` (the default) refuses. This presents the node's own certificate
(it carries clientAuth for the peer links) and verifies the node's against the CA, not
its name: 127.0.0.1 is rarely among the names. It reads the same GEOCACHE_* variables
as `geocache serve` and imports nothing but the standard library, so a probe costs an
interpreter start (about 0.1 s of CPU), not geocache's imports.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from collections.abc import Mapping, Sequence

# A probe that waits longer than this is a failed probe (the HEALTHCHECK's own timeout
# is 3 s; Kubernetes' default is 1 s, the manifests give 3 s).
TIMEOUT_S = 2.0
WILDCARDS = ("", "0.0.0.0", "::")
FALSE = ("0", "false", "no", "off")


def https(env: Mapping[str, str]) -> bool:
    """The node serves HTTPS: a TLS port is set and tls_http is not turned off."""
    tls_port = env.get("GEOCACHE_TLS_PORT", "0").strip()
    return tls_port not in ("", "0") and env.get("GEOCACHE_TLS_HTTP", "yes").lower() not in FALSE


def context(env: Mapping[str, str]) -> ssl.SSLContext:
    ca_file = env.get("GEOCACHE_TLS_CA_CERT_FILE") or None
    ca_dir = env.get("GEOCACHE_TLS_CA_CERT_DIR") or None
    tls = ssl.create_default_context(cafile=ca_file, capath=ca_dir)
    tls.check_hostname = False  # the certificate is still verified against the CA
    tls.load_cert_chain(env["GEOCACHE_TLS_CERT_FILE"], env["GEOCACHE_TLS_KEY_FILE"])
    return tls


def url(env: Mapping[str, str], path: str) -> str:
    bind = env.get("GEOCACHE_BIND", "")
    host = "127.0.0.1" if bind in WILDCARDS else bind
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if https(env) else "http"
    return f"{scheme}://{host}:{env.get('GEOCACHE_HTTP_PORT', '7380')}{path}"


def main(argv: Sequence[str], env: Mapping[str, str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    try:
        tls = context(env) if https(env) else None
        with urllib.request.urlopen(url(env, path), timeout=TIMEOUT_S, context=tls) as reply:
            return 0 if reply.status == 200 else 1
    # Files that do not load, refused, timed out, TLS refused, HTTP 503: one line each.
    except (OSError, ValueError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv, os.environ))
