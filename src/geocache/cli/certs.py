"""Certificates for a demo or a test cluster: a CA, a node certificate and a client
certificate, written as PEM files (`geocache certs`, and `geocache demo` at start).

The node certificate names every host given (DNS names and IP addresses) and serves for
both ends of a peer link (serverAuth and clientAuth), so one certificate per node, or
one for every node of a small cluster, is all mutual TLS needs. Keys are ECDSA P-256
(fast handshakes, small); the CA is valid for 10 years and leaves for `days`. For
production use your own CA (or your PKI) and keep the CA's key off the nodes: this
writes it beside the others so that more certificates can be issued later.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# A node certificate lasts 90 days by default: long enough for a demo or a test cluster,
# short enough that rotation (SIGHUP) is a habit, as with ACME certificates.
LEAF_DAYS = 90
CA_DAYS = 3650
# Clock skew between the machine that issues and the nodes that verify (seconds).
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class CertFiles:
    directory: Path
    ca_cert: Path
    ca_key: Path
    node_cert: Path
    node_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "geocache"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _builder(subject: x509.Name, issuer: x509.Name, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certs(directory: Path, hosts: list[str], days: int = LEAF_DAYS) -> CertFiles:
    """A CA, a node certificate for `hosts` and a client certificate, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("geocache CA")
    ca_cert = (
        _builder(ca_name, ca_name, CA_DAYS)
        .public_key(ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    files = CertFiles(
        directory,
        directory / "ca.crt",
        directory / "ca.key",
        directory / "node.crt",
        directory / "node.key",
        directory / "client.crt",
        directory / "client.key",
    )
    _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(files.ca_key, _pem_key(ca_key), private=True)
    _leaf(ca_cert, ca_key, "geocache node", hosts, days, files.node_cert, files.node_key)
    _leaf(ca_cert, ca_key, "geocache client", [], days, files.client_cert, files.client_key)
    return files


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    hosts: list[str],
    days: int,
    cert_path: Path,
    key_path: Path,
) -> None:
    key = _key()
    builder = (
        _builder(_name(common_name), ca_cert.subject, days)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write(key_path, _pem_key(key), private=True)
