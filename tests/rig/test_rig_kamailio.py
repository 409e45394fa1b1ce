"""The private Kamailio presence server: start, OPTIONS, stop by PID, digest (MD5 and SHA-256),
TLS against the rig CA, and a restart that forgets publications (the bridge's 412 case).

The SIP client here is a few lines of raw UDP/TLS on purpose: the rig must be provable without
the bridge's own SIP stack. SIPp-driven presence flows are in test_rig_sipp.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncap.errors import RigError
from ncap.rig.kamailio import DigestAlgorithm, PrivateKamailio

pytestmark = pytest.mark.integration

TIMEOUT = 3.0
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:sensor1@example.test">'
    '<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)


@pytest.fixture
def kamailio_workdir() -> Iterator[Path]:
    """A directory the ``kamailio`` user can reach (pytest's ``tmp_path`` is root-only)."""
    with tempfile.TemporaryDirectory(prefix="ncap-kamailio-") as workdir:
        yield Path(workdir)


class Response:
    def __init__(self, data: bytes) -> None:
        head = data.decode("utf-8", "replace").split("\r\n\r\n", 1)[0].split("\r\n")
        self.status = int(head[0].split(" ", 2)[1])
        self.headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), value.strip())


class RawPublisher:
    """Just enough of a UAC to PUBLISH over one UDP socket and answer a 407 by digest."""

    def __init__(self, server: PrivateKamailio, user: str = "sensor1") -> None:
        self.server = server
        self.user = user
        self.call_id = secrets.token_hex(8)
        self.cseq = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)

    def close(self) -> None:
        self.sock.close()

    def publish(
        self, *, etag: str | None = None, body: str | None = PIDF, authorization: str = ""
    ) -> Response:
        self.cseq += 1
        aor = self.server.aor(self.user)
        port = self.sock.getsockname()[1]
        lines = [
            f"PUBLISH {aor} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <{aor}>;tag=pub{self.call_id[:6]}",
            f"To: <{aor}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} PUBLISH",
            "Event: presence",
            "Expires: 60",
            *([f"SIP-If-Match: {etag}"] if etag else []),
            *([authorization] if authorization else []),
            *(["Content-Type: application/pidf+xml"] if body else []),
            f"Content-Length: {len((body or '').encode())}",
        ]
        message = "\r\n".join(lines) + "\r\n\r\n" + (body or "")
        self.sock.sendto(message.encode(), (self.server.host, self.server.udp_port))
        while True:  # skip provisional responses
            response = Response(self.sock.recv(65535))
            if response.status >= 200:
                return response

    def publish_with_digest(
        self, password: str, algorithm: DigestAlgorithm = "MD5", auth_user: str | None = None
    ) -> tuple[Response, Response]:
        """PUBLISH, expect a 407 challenge, answer it; return (challenge, final response).

        ``auth_user`` authenticates as someone other than the publisher.
        """
        challenge = self.publish()
        assert challenge.status == 407, challenge.status
        params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge.headers["proxy-authenticate"]))
        digest = hashlib.md5 if algorithm == "MD5" else hashlib.sha256
        uri = self.server.aor(self.user)
        cnonce = secrets.token_hex(4)
        username = auth_user or self.user
        ha1 = digest(f"{username}:{params['realm']}:{password}".encode()).hexdigest()
        ha2 = digest(f"PUBLISH:{uri}".encode()).hexdigest()
        response = digest(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}".encode())
        authorization = (
            f'Proxy-Authorization: Digest username="{username}", realm="{params["realm"]}", '
            f'nonce="{params["nonce"]}", uri="{uri}", response="{response.hexdigest()}", '
            f'algorithm={algorithm}, cnonce="{cnonce}", qop=auth, nc=00000001'
        )
        return challenge, self.publish(authorization=authorization)


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)[1])  # type: ignore[index]


def _udp_port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_starts_answers_options_and_stops_by_pid(kamailio_workdir: Path) -> None:
    server = PrivateKamailio(kamailio_workdir)
    with server:
        pid = server.pid
        assert pid is not None
        assert server.udp_port == server.tcp_port > 0
        assert server.tls_port == 0
        assert server.options() == 200
        if os.geteuid() == 0:  # never as root: the package's kamailio user
            assert _uid_of(pid) != 0
        with socket.create_connection((server.host, server.tcp_port), timeout=TIMEOUT):
            pass
    assert server.pid is None
    assert not Path(f"/proc/{pid}").exists()
    assert _udp_port_is_free(server.udp_port)  # no worker kept the port
    server.stop()  # idempotent


def test_taken_port_is_a_clear_start_failure(kamailio_workdir: Path) -> None:
    server = PrivateKamailio(kamailio_workdir)
    with server:
        port = server.udp_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        with pytest.raises(RigError, match=r"(?s)exited with status.*kamailio\.log"):
            server.start(keep_ports=True)
    assert server.pid is None


def test_publish_without_auth_gets_etag(kamailio_workdir: Path) -> None:
    with PrivateKamailio(kamailio_workdir) as server:
        client = RawPublisher(server)
        try:
            first = client.publish()
            assert first.status == 200
            assert first.headers["sip-etag"]
            refreshed = client.publish(etag=first.headers["sip-etag"], body=None)
            assert refreshed.status == 200
        finally:
            client.close()


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_required_and_checked(kamailio_workdir: Path, algorithm: DigestAlgorithm) -> None:
    users = {"sensor1": "s3cret", "watcher": "other"}
    with PrivateKamailio(kamailio_workdir, users=users, auth_algorithm=algorithm) as server:
        assert server.options() == 200  # probes need no credentials
        client = RawPublisher(server)
        try:
            challenge, accepted = client.publish_with_digest("s3cret", algorithm)
            offered = challenge.headers["proxy-authenticate"]
            assert f"algorithm={algorithm}" in offered
            assert 'qop="auth"' in offered
            assert accepted.status == 200
            assert accepted.headers["sip-etag"]
            _, refused = client.publish_with_digest("wrong", algorithm)
            assert refused.status == 407  # challenged again, never accepted
        finally:
            client.close()


def test_auth_user_must_be_the_publisher(kamailio_workdir: Path) -> None:
    users = {"sensor1": "s3cret", "mallory": "m"}
    with PrivateKamailio(kamailio_workdir, users=users) as server:
        client = RawPublisher(server, user="sensor1")
        try:
            _, response = client.publish_with_digest("m", auth_user="mallory")
            assert response.status == 403  # good credentials, but not sensor1's
        finally:
            client.close()


def test_restart_forgets_publications_so_refresh_gets_412(kamailio_workdir: Path) -> None:
    server = PrivateKamailio(kamailio_workdir)
    with server:
        client = RawPublisher(server)
        try:
            etag = client.publish().headers["sip-etag"]
            port = server.udp_port
            server.stop()
            server.start(keep_ports=True)  # a fresh database, as after a crash
            assert server.udp_port == port
            assert client.publish(etag=etag, body=None).status == 412
            assert client.publish().status == 200  # a new initial PUBLISH recovers
        finally:
            client.close()


def test_tls_listener_verified_against_rig_ca(kamailio_workdir: Path) -> None:
    with PrivateKamailio(kamailio_workdir, tls=True) as server:
        assert server.tls_port not in (0, server.udp_port)
        context = ssl.create_default_context(cafile=str(server.ca_file))
        with (
            socket.create_connection((server.host, server.tls_port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=server.domain) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            port = tls.getsockname()[1]
            call_id = secrets.token_hex(8)
            request = (
                f"OPTIONS sip:{server.domain} SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{server.domain}>;tag=t1\r\n"
                f"To: <sip:{server.domain}>\r\n"
                f"Call-ID: {call_id}\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            tls.sendall(request.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                assert chunk, "connection closed before a response"
                data += chunk
        assert data.startswith(b"SIP/2.0 200 ")
        assert call_id.encode() in data


def test_wrong_ca_is_refused(kamailio_workdir: Path) -> None:
    with PrivateKamailio(kamailio_workdir, tls=True) as server:
        context = ssl.create_default_context()  # system CAs only: the rig CA is unknown
        with (
            socket.create_connection((server.host, server.tls_port), timeout=TIMEOUT) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            context.wrap_socket(raw, server_hostname=server.domain)


def test_unreachable_workdir_is_refused_before_start() -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the work directory to the kamailio user")
    with tempfile.TemporaryDirectory() as private:  # mode 0700, owned by root
        server = PrivateKamailio(Path(private) / "inner")
        with pytest.raises(RigError, match="cannot reach"):
            server.start()
