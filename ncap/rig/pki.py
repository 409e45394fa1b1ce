"""A throw-away PKI for the rig: one CA and one server certificate signed by it.

The server certificate names ``domain``, ``*.domain`` (so ``pubsub.domain`` and external
components are covered) and ``127.0.0.1``. Keys are EC P-256, written as unencrypted PKCS#8 PEM
with mode 0600; certificates are PEM with mode 0644. The extensions follow RFC 5280 closely
enough for OpenSSL's strict X.509 checks (critical basicConstraints/keyUsage, SKI/AKI).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CaFiles", "TlsFiles", "make_ca", "make_test_pki"]

_BACKDATE = dt.timedelta(hours=1)
_LIFETIME = dt.timedelta(days=30)


@dataclass(frozen=True)
class CaFiles:
    """Paths of a CA certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the rig's CA and of the server certificate it signed."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` so that it never exists with wider permissions than ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the file may have existed already with other bits
        os.write(fd, data)
    finally:
        os.close(fd)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(path, pem, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - _BACKDATE, now + _LIFETIME


def _new_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "NCAP test rig"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    not_before, not_after = _validity()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
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
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server_cert(
    domain: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _validity()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(domain),
                    x509.DNSName(f"*.{domain}"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_ca(directory: Path, common_name: str = "NCAP test CA", stem: str = "ca") -> CaFiles:
    """Create a self-signed CA in ``directory`` as ``{stem}.pem`` and ``{stem}.key``.

    Each call makes a fresh key, so two calls give two CAs that do not trust each other (which
    is what a "wrong CA is refused" test needs).
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = _new_ca(common_name)
    files = CaFiles(cert=directory / f"{stem}.pem", key=directory / f"{stem}.key")
    _write_key(files.key, key)
    _write_cert(files.cert, cert)
    return files


def make_test_pki(directory: Path, domain: str) -> TlsFiles:
    """Create a CA plus a server certificate for ``domain`` signed by it, all in ``directory``.

    Files: ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _new_ca(f"NCAP test CA for {domain}")
    server_cert, server_key = _new_server_cert(domain, ca_cert, ca_key)
    files = TlsFiles(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
    )
    _write_key(files.ca_key, ca_key)
    _write_cert(files.ca_cert, ca_cert)
    _write_key(files.server_key, server_key)
    _write_cert(files.server_cert, server_cert)
    return files
