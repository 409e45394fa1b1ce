"""The rig's throw-away PKI: chain, names, validity window, key file modes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

from cryptography import x509

from ncap.rig import make_ca, make_test_pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_server_certificate_is_signed_by_ca_and_names_the_domain(tmp_path: Path) -> None:
    files = make_test_pki(tmp_path, "ncap.test")
    ca, server = _load(files.ca_cert), _load(files.server_cert)
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ncap.test", "*.ncap.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address("127.0.0.1")]
    now = dt.datetime.now(dt.UTC)
    assert server.not_valid_before_utc < now - dt.timedelta(minutes=50)
    assert now + dt.timedelta(days=29) < server.not_valid_after_utc
    for key in (files.ca_key, files.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_make_ca_gives_a_different_ca_each_time(tmp_path: Path) -> None:
    files = make_test_pki(tmp_path / "rig", "ncap.test")
    other = make_ca(tmp_path / "other", "Some other CA")
    assert _load(other.cert).public_key() != _load(files.ca_cert).public_key()
    assert stat.S_IMODE(other.key.stat().st_mode) == 0o600
