"""TLS settings and helpers: validation, protocol versions, seeds, the log limiter, and
the channel binding both ends of a connection agree on (and that differs per connection)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import pytest

from geocache.cli.main import build_parser, main
from geocache.client.topology import parse_seeds
from geocache.cluster.peers import tls_dial
from geocache.config import NodeConfig, coerce
from geocache.server.tls import RESP_REFUSAL, TlsCounters, TlsListener
from geocache.tls import (
    LogLimiter,
    channel_binding,
    client_context,
    parse_protocols,
    peer_context,
    server_context,
)
from support.tls import Certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs.make(tmp_path_factory.mktemp("unit-certs"))


def tls_config(certs: Certs, **changes: object) -> NodeConfig:
    settings: dict[str, object] = {
        "tls_port": 17_999,
        "tls_cert_file": str(certs.node.cert),
        "tls_key_file": str(certs.node.key),
        "tls_ca_cert_file": str(certs.ca_file),
    }
    settings.update(changes)
    return NodeConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tls_port": 7000}, "tls_cert_file"),
        ({"tls_port": 7000, "tls_cert_file": "c", "tls_key_file": "k"}, "tls_ca_cert"),
        ({"tls_cluster": True}, "tls_cluster needs"),
        ({"tls_protocols": "SSLv3"}, "TLSv1.2"),
        ({"tls_auth_clients": "maybe"}, "no, optional or yes"),
    ],
)
def test_bad_tls_settings_say_what_is_wrong(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NodeConfig(**changes)  # type: ignore[arg-type]


def test_port_0_cluster_needs_tls_cluster(certs: Certs) -> None:
    with pytest.raises(ValueError, match="tls_cluster yes"):
        tls_config(certs, port=0, cluster_secret="s")
    config = tls_config(certs, port=0, cluster_secret="s", tls_cluster=True, bind="10.0.0.1")
    assert config.peer_addr == "10.0.0.1:17999"
    assert config.effective_node_id == "10.0.0.1:17999"
    assert tls_config(certs, port=7000, cluster_secret="s").peer_addr == "127.0.0.1:7000"


def test_yes_no_flags_take_redis_spelling() -> None:
    args = build_parser().parse_args(["serve", "--tls-cluster", "yes", "--tls-http", "no"])
    assert (args.tls_cluster, args.tls_http) == ("yes", "no")
    assert build_parser().parse_args(["serve", "--tls-cluster"]).tls_cluster == "yes"
    assert coerce("tls_cluster", "yes") is True
    assert coerce("tls_http", "no") is False
    with pytest.raises(ValueError, match="not true or false"):
        coerce("tls_cluster", "maybe")


def test_protocols() -> None:
    assert parse_protocols("") == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert parse_protocols("TLSv1.3") == (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)


def test_auth_clients_and_cluster_set_the_verify_mode(certs: Certs) -> None:
    assert server_context(tls_config(certs)).verify_mode == ssl.CERT_REQUIRED
    assert server_context(tls_config(certs, tls_auth_clients="no")).verify_mode == ssl.CERT_NONE
    # Peers present certificates: with tls_cluster they are asked for, and verified.
    config = tls_config(certs, tls_auth_clients="no", tls_cluster=True)
    assert server_context(config).verify_mode == ssl.CERT_OPTIONAL
    assert peer_context(config).check_hostname


def test_seeds_with_schemes() -> None:
    assert parse_seeds(["rediss://a:1", "rediss://b:2/"]) == (["a:1", "b:2"], True)
    assert parse_seeds("redis://a:1") == (["a:1"], False)
    assert parse_seeds(["a:1"]) == (["a:1"], False)
    with pytest.raises(ValueError, match="mix"):
        parse_seeds(["rediss://a:1", "b:2"])


def test_log_limiter_says_once_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    limiter = LogLimiter(logging.getLogger("geocache.test"), interval_s=60)
    with caplog.at_level(logging.WARNING, logger="geocache.test"):
        for _ in range(5):
            limiter.warning("a", "refused", reason="a")
        limiter.warning("b", "refused", reason="b")
    assert [r.getMessage() for r in caplog.records] == ["refused", "refused"]


class _Capture(asyncio.Protocol):
    bindings: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.bindings.append(channel_binding(transport))  # type: ignore[arg-type]


async def test_both_ends_agree_on_the_channel_binding_and_it_differs_per_connection(
    certs: Certs, tmp_path: Path
) -> None:
    config = tls_config(certs, tls_cluster=True, cluster_secret="s")
    limiter = LogLimiter(logging.getLogger("geocache.test"))
    listener = TlsListener(
        "resp", _Capture, server_context(config), RESP_REFUSAL, TlsCounters(), limiter
    )
    port = listener.listen("127.0.0.1", 0)
    try:
        dial = tls_dial(f"127.0.0.1:{port}", peer_context(config), "127.0.0.1:1")
        ours = []
        for _ in range(2):
            transport, _protocol = await dial(asyncio.Protocol)
            ours.append(channel_binding(transport))  # type: ignore[arg-type]
            transport.close()
        for _ in range(100):
            if len(_Capture.bindings) == 2:
                break
            await asyncio.sleep(0.01)
        assert _Capture.bindings == ours
        assert ours[0] != ours[1] and all(len(b) >= 12 for b in ours)
    finally:
        listener.close()
    assert channel_binding(None) == b""


async def test_geocache_certs_makes_a_chain_both_ends_of_mutual_tls_accept(
    tmp_path: Path,
) -> None:
    assert main(["certs", "--dir", str(tmp_path), "--hosts", "127.0.0.1,node.example"]) == 0
    config = NodeConfig(
        tls_port=1,
        tls_cert_file=str(tmp_path / "node.crt"),
        tls_key_file=str(tmp_path / "node.key"),
        tls_ca_cert_file=str(tmp_path / "ca.crt"),
        tls_cluster=True,
        cluster_secret="s",
    )
    limiter = LogLimiter(logging.getLogger("geocache.test"))
    listener = TlsListener(
        "resp", asyncio.Protocol, server_context(config), RESP_REFUSAL, TlsCounters(), limiter
    )
    port = listener.listen("127.0.0.1", 0)
    try:
        for name in ("127.0.0.1", "node.example"):  # the node certificate names both
            dial = tls_dial(f"127.0.0.1:{port}", peer_context(config), f"{name}:1")
            transport, _ = await dial(asyncio.Protocol)
            transport.close()
        # A client certificate made with it is accepted where one is required.
        client = client_context(
            ca_file=str(tmp_path / "ca.crt"),
            cert_file=str(tmp_path / "client.crt"),
            key_file=str(tmp_path / "client.key"),
        )
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(
            asyncio.Protocol, "127.0.0.1", port, ssl=client, server_hostname="127.0.0.1"
        )
        transport.close()
        await asyncio.sleep(0.05)
    finally:
        listener.close()
