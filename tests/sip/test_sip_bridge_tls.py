"""The SIP bridge's TLS listener (``[sip] tls_port``): a watcher trusting our CA subscribes with
digest auth and gets its NOTIFY over the same TLS flow, entity and contact as it subscribed
(sips:); one trusting another CA fails the handshake; bad TLS files are config errors."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ncap.config import load_config
from ncap.errors import ConfigError
from ncap.rig.pki import TlsFiles, make_ca, make_test_pki
from ncap.sip.bridge import SipBridge, SipUser, ThingStatus
from ncap.sip.view import server_tls_context
from sipstack.digest import DigestClient
from sipstack.message import SipRequest
from sipstack.transaction import LocalResponse
from sipstack.transport import Destination
from sipstack.ua import IncomingRequest, UserAgent

DOMAIN = "sip.test"
THING = "thing"
OWNER = ("boss", "b0ss-secret")
TIMEOUT = 10.0


class _Thing:
    def status(self) -> ThingStatus:
        return ThingStatus("open", None, "temperature 21.5 °C")

    def alarm_counts(self, identity: str) -> tuple[int, int, int, int]:
        return (0, 0, 0, 0)

    async def may_see(self, identity: str) -> bool:
        return identity == OWNER[0]

    async def command(self, identity: str, text: str) -> str:
        return text


@pytest.fixture
def pki(tmp_path: Path) -> TlsFiles:
    return make_test_pki(tmp_path / "tls", DOMAIN)


@pytest.fixture
async def bridge(pki: TlsFiles) -> AsyncIterator[SipBridge]:
    bridge = SipBridge(
        _Thing(),
        thing_user=THING,
        domain=DOMAIN,
        users={OWNER[0]: SipUser(OWNER[1])},
        udp_port=0,
        tls_port=0,
        tls_context=server_tls_context(pki.server_cert, pki.server_key),
        min_notify_interval=0.0,
    )
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.aclose()


def _subscribe(uri: str) -> SipRequest:
    request = SipRequest("SUBSCRIBE", uri)
    for name, value in (
        ("From", f"<sips:{OWNER[0]}@{DOMAIN}>;tag=tls1"),
        ("To", f"<{uri}>"),
        ("Event", "presence"),
        ("Expires", "60"),
        ("Contact", f"<sips:{OWNER[0]}@127.0.0.1>"),
    ):
        request.headers.add(name, value)
    return request


def _client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))


async def test_subscribe_over_tls_with_digest_gets_a_sips_notify(
    bridge: SipBridge, pki: TlsFiles
) -> None:
    notifies: asyncio.Queue[SipRequest] = asyncio.Queue()

    async def on_notify(incoming: IncomingRequest) -> None:
        notifies.put_nowait(incoming.request)
        incoming.respond(200)

    uri = f"sips:{THING}@{DOMAIN}"
    to_bridge = Destination("127.0.0.1", bridge.port("TLS"), "TLS", server_name=DOMAIN)
    async with (
        UserAgent("127.0.0.1", tls_client_context=_client_context(pki.ca_cert)) as ua,
        asyncio.timeout(TIMEOUT),
    ):
        ua.on("NOTIFY", on_notify)
        ok = await ua.request(_subscribe(uri), destination=to_bridge, auth=DigestClient(*OWNER))
        assert ok.status == 200
        assert (ok.headers.get("Contact") or "").startswith("<sips:")
        notify = await notifies.get()
        assert (notify.headers.get("Subscription-State") or "").startswith("active")
        assert f'entity="{uri}"'.encode() in notify.body
        assert f"<contact>{uri}</contact>".encode() in notify.body
        assert (notify.headers.get("Contact") or "").startswith(f"<sips:{THING}@")
        assert "TLS" in (notify.headers.get("Via") or "").upper()
    assert bridge.subscriptions == 1


async def test_a_client_trusting_another_ca_fails_the_handshake(
    bridge: SipBridge, tmp_path: Path
) -> None:
    other = make_ca(tmp_path / "other-ca", "Some other CA")
    to_bridge = Destination("127.0.0.1", bridge.port("TLS"), "TLS", server_name=DOMAIN)
    async with (
        UserAgent("127.0.0.1", tls_client_context=_client_context(other.cert)) as ua,
        asyncio.timeout(TIMEOUT),
    ):
        response = await ua.request(_subscribe(f"sips:{THING}@{DOMAIN}"), destination=to_bridge)
    assert isinstance(response, LocalResponse)  # made up by our stack: no peer answered
    assert response.status == 503
    assert "CERTIFICATE_VERIFY_FAILED" in response.cause
    assert bridge.subscriptions == 0


CONFIG = """
[xmpp]
jid = "thing@example.org"
password_file = "secret"
[sip]
enabled = true
tls_port = 5061
tls_cert_file = "tls/server.crt"
tls_key_file = "tls/server.key"
"""


def _config(tmp_path: Path, pki: TlsFiles, text: str = CONFIG) -> Path:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    text = text.replace("tls/server.crt", str(pki.server_cert))
    text = text.replace("tls/server.key", str(pki.server_key))
    path = tmp_path / "ncap.toml"
    path.write_text(text)
    return path


def test_tls_files_load_and_bad_ones_name_the_key(tmp_path: Path, pki: TlsFiles) -> None:
    config = load_config(_config(tmp_path, pki))
    assert config.sip.tls_port == 5061
    assert config.sip.tls_key_file == pki.server_key

    pki.server_key.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, pki))
    assert caught.value.key == "sip.tls_key_file"
    assert "chmod 600" in caught.value.problem
    pki.server_key.chmod(0o600)

    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, pki, CONFIG.replace("tls/server.crt", "tls/absent.crt")))
    assert caught.value.key == "sip.tls_cert_file"

    wrong_key = make_ca(tmp_path / "unrelated").key  # a key that does not match the cert
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, pki, CONFIG.replace("tls/server.key", str(wrong_key))))
    assert caught.value.key == "sip.tls_key_file"

    without_key = CONFIG.replace('tls_key_file = "tls/server.key"\n', "")
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, pki, without_key))
    assert caught.value.key == "sip.tls_key_file"
    assert "required" in caught.value.problem
